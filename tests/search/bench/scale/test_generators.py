import numpy as np
import pytest

from indexes.exact import exact_search
from search.bench.scale.generators import (
    GEN_BLOCK,
    QUERY_STREAM,
    load_source_vectors,
    make_generator,
    make_vectors,
    noise_transform,
    source_neighbours,
)

# Prefix tests below compare with exact equality on purpose: the vectors for N and for M > N come from the very same
# computation (block b is drawn from the seed (seed, stream, b) and computed whole, with the same shapes, whatever N
# is), so they are identical bits on any BLAS. Only the cut differs.


@pytest.mark.parametrize("generator", ["mix", "noise"])
def test_vectors_are_seeded_unit_norm_and_nested(source_npy, generator):
    source = load_source_vectors(source_npy)
    base, base_src, queries, query_src = make_vectors(source, 5000, 50, seed=3, generator=generator)
    again = make_vectors(source, 5000, 50, seed=3, generator=generator)
    for got, want in zip(again, (base, base_src, queries, query_src), strict=True):
        np.testing.assert_array_equal(got, want)  # same seed, same computation
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    smaller, smaller_src, _, _ = make_vectors(source, 2000, 50, seed=3, generator=generator)
    np.testing.assert_array_equal(smaller, base[:2000])  # each N is an exact prefix of the larger corpus
    np.testing.assert_array_equal(smaller_src, base_src[:2000])
    other, _, _, _ = make_vectors(source, 2000, 50, seed=4, generator=generator)
    assert not np.allclose(other, smaller)
    assert len(set(query_src.tolist())) > 30  # queries come from many sources
    assert not np.allclose(base[:300], source[base_src[:300]])  # not the sources themselves


@pytest.mark.parametrize("generator", ["mix", "noise"])
def test_prefix_holds_across_block_boundaries(unit_vectors, generator):
    source = unit_vectors(200, 8, seed=2)
    maker = make_generator(source, generator, seed=1)
    big, big_src = maker.corpus(2 * GEN_BLOCK + 300)
    for n in (1, GEN_BLOCK - 5, GEN_BLOCK, GEN_BLOCK + 10, 2 * GEN_BLOCK + 1):
        small, small_src = maker.corpus(n)
        np.testing.assert_array_equal(small, big[:n])
        np.testing.assert_array_equal(small_src, big_src[:n])
    second, second_src = maker.block(1, 1)  # block 1 of the corpus stream is rows GEN_BLOCK .. 2 * GEN_BLOCK
    np.testing.assert_array_equal(second, big[GEN_BLOCK : 2 * GEN_BLOCK])
    np.testing.assert_array_equal(second_src, big_src[GEN_BLOCK : 2 * GEN_BLOCK])
    assert not np.allclose(big[:GEN_BLOCK], second)  # blocks have their own seeds
    queries, _ = maker.queries(100)
    np.testing.assert_array_equal(queries, maker.block(QUERY_STREAM, 0)[0][:100])
    assert not np.allclose(big[:100], queries)  # queries use another seed stream


def test_mix_is_a_weighted_mix_of_the_dominant_source_and_its_nearest_neighbours(unit_vectors):
    source = unit_vectors(400, 64, seed=5)
    neighbours = source_neighbours(source, 3)
    scores = source @ source.T
    np.fill_diagonal(scores, -np.inf)
    # another computation of the same scores: the found neighbours' scores must be the 3 best, up to summation order
    best = -np.sort(-scores, axis=1)[:, :3]
    np.testing.assert_allclose(np.take_along_axis(scores, neighbours, axis=1), best, atol=1e-5)
    maker = make_generator(source, "mix", target_cosine=1 - 1e-9, seed=0, mix_neighbours=3)
    base, dominant = maker.corpus(300)
    partner_counts = []
    for vector, src in zip(base, dominant, strict=True):
        span = source[[src, *neighbours[src]]]  # the dominant source and its 3 nearest others
        coef, *_ = np.linalg.lstsq(span.T, vector, rcond=None)
        assert np.linalg.norm(span.T @ coef - vector) < 1e-3  # inside their span
        assert coef[0] >= coef[1:].max() - 1e-3
        assert coef.min() > -1e-3  # i_1 has the largest weight, none negative
        partner_counts.append(int((coef[1:] > 1e-3).sum()))
    assert max(partner_counts) == 2
    assert partner_counts.count(1) > 50
    assert partner_counts.count(2) > 50  # 1 or 2


def manifold_sources(n: int, dim: int = 64, latent: int = 8, spread: float = 0.5, seed: int = 7) -> np.ndarray:
    """Unit vectors near a random `latent`-d subspace: a smooth neighbour profile like real embeddings' (top-1 cosine
    ~0.72, top-10th ~0.58 for 500 of them; real MiniLM on SciFact: 0.68, 0.53), unlike tight clusters."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, latent)) @ rng.standard_normal((latent, dim))
    x += spread * np.sqrt(latent) * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mix_has_far_fewer_same_source_neighbours_than_noise():
    source = manifold_sources(500)
    shares = {}
    for generator in ("noise", "mix"):
        base, base_src, queries, query_src = make_vectors(source, 20_000, 200, seed=0, generator=generator)
        _, truth = exact_search(queries, base, 10)
        shares[generator] = float((base_src[truth] == query_src[:, None]).mean())
    assert shares["noise"] > 0.85  # 40 copies per source: the top-10 is mostly the query's own clump
    assert shares["mix"] < shares["noise"] - 0.2


@pytest.mark.parametrize("mode", ["data", "isotropic"])
@pytest.mark.parametrize("target", [0.8, 0.9])
def test_noise_hits_the_target_cosine(source_npy, mode, target):
    source = load_source_vectors(source_npy)
    base, base_src, queries, query_src = make_vectors(source, 3000, 200, mode, target, seed=0, generator="noise")
    np.testing.assert_array_equal(base_src, np.arange(3000) % 300)
    cos = np.einsum("ij,ij->i", base, source[base_src])
    assert abs(cos.mean() - target) < 0.03
    assert abs(np.einsum("ij,ij->i", queries, source[query_src]).mean() - target) < 0.03


def test_mix_hits_the_target_cosine_to_its_noise_free_point(unit_vectors):
    source = unit_vectors(400, 64, seed=5)
    clean = make_generator(source, "mix", target_cosine=1 - 1e-9, seed=0).corpus(2000)[0]
    noisy = make_generator(source, "mix", target_cosine=0.87, seed=0).corpus(2000)[0]
    # same seed: the same mixtures m, only the noise energy differs, so `clean` is m up to ~1e-9
    assert abs(np.einsum("ij,ij->i", noisy, clean).mean() - 0.87) < 0.02


def test_data_noise_has_the_source_covariance(source_npy):
    source = load_source_vectors(source_npy)
    transform = noise_transform(source, "data", 0.85).astype(np.float64)
    centred = source - source.mean(axis=0)
    cov = centred.T @ centred / len(source)
    scale = (1 / 0.85**2 - 1) / np.trace(cov)
    np.testing.assert_allclose(transform.T @ transform, cov * scale, atol=1e-5)


def test_load_source_vectors_normalises_and_rejects_bad_files(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.array([[3.0, 4.0], [0.0, 2.0]]))
    np.testing.assert_allclose(load_source_vectors(path), [[0.6, 0.8], [0.0, 1.0]], atol=1e-7)
    np.save(path, np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="all-zero"):
        load_source_vectors(path)
    with pytest.raises(ValueError, match=".npy"):
        load_source_vectors(tmp_path / "v.txt")
