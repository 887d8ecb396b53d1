import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from indexes.exact import exact_search
from search.bench.scale import (
    FILES,
    GEN_CHUNK,
    ScaleBenchSpec,
    default_nlist,
    load_source_vectors,
    make_generator,
    make_vectors,
    noise_transform,
    parse_sizes,
    resolve_factory,
    run_scale_bench,
    source_neighbours,
)
from search.cli import app

runner = CliRunner()


@pytest.fixture
def source_npy(unit_vectors, tmp_path):
    path = tmp_path / "embeddings.npy"
    np.save(path, unit_vectors(300, 32, seed=1))
    return path


@pytest.mark.parametrize("generator", ["mix", "noise"])
def test_vectors_are_seeded_unit_norm_and_nested(source_npy, generator):
    source = load_source_vectors(source_npy)
    base, base_src, queries, query_src = make_vectors(source, 5000, 50, seed=3, generator=generator)
    again = make_vectors(source, 5000, 50, seed=3, generator=generator)
    for got, want in zip(again, (base, base_src, queries, query_src), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    smaller, smaller_src, _, _ = make_vectors(source, 2000, 50, seed=3, generator=generator)
    np.testing.assert_array_equal(smaller, base[:2000])  # each N is a prefix of the larger corpus
    np.testing.assert_array_equal(smaller_src, base_src[:2000])
    other, _, _, _ = make_vectors(source, 2000, 50, seed=4, generator=generator)
    assert not np.allclose(other, smaller)
    assert len(set(query_src.tolist())) > 30  # queries come from many sources
    assert not np.allclose(base[:300], source[base_src[:300]])  # not the sources themselves


def test_mix_prefix_holds_across_chunk_boundaries(unit_vectors):
    source = unit_vectors(200, 8, seed=2)
    maker = make_generator(source, "mix", seed=1)
    big, big_src = maker.corpus(GEN_CHUNK + 300)
    for n in (GEN_CHUNK - 5, GEN_CHUNK + 10):
        small, small_src = maker.corpus(n)
        np.testing.assert_array_equal(small, big[:n])
        np.testing.assert_array_equal(small_src, big_src[:n])
    assert not np.allclose(big[:100], maker.queries(100)[0])  # queries use another seed stream


def test_mix_is_a_weighted_mix_of_the_dominant_source_and_its_nearest_neighbours(unit_vectors):
    source = unit_vectors(400, 64, seed=5)
    neighbours = source_neighbours(source, 3)
    scores = source @ source.T
    np.fill_diagonal(scores, -np.inf)
    np.testing.assert_array_equal(neighbours, np.argsort(-scores, axis=1, kind="stable")[:, :3])
    maker = make_generator(source, "mix", target_cosine=1 - 1e-9, seed=0, mix_neighbours=3)
    base, dominant = maker.corpus(300)
    partner_counts = []
    for vector, src in zip(base, dominant, strict=True):
        span = source[[src, *neighbours[src]]]  # the dominant source and its 3 nearest others
        coef, *_ = np.linalg.lstsq(span.T, vector, rcond=None)
        assert np.linalg.norm(span.T @ coef - vector) < 1e-3  # inside their span
        assert coef[0] >= coef[1:].max() - 1e-3 and coef.min() > -1e-3  # i_1 has the largest weight, none negative
        partner_counts.append(int((coef[1:] > 1e-3).sum()))
    assert max(partner_counts) == 2 and partner_counts.count(1) > 50 and partner_counts.count(2) > 50  # 1 or 2


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


def test_data_noise_has_the_source_covariance(source_npy):
    source = load_source_vectors(source_npy)
    transform = noise_transform(source, "data", 0.85).astype(np.float64)
    centred = source - source.mean(axis=0)
    cov = centred.T @ centred / len(source)
    scale = (1 / 0.85**2 - 1) / np.trace(cov)
    np.testing.assert_allclose(transform.T @ transform, cov * scale, atol=1e-5)


def test_default_nlist_and_factory_templates():
    assert [default_nlist(n) for n in (10_000, 100_000, 1_000_000)] == [256, 1024, 4096]
    for n in (10, 500, 2000, 5000, 30_000):
        nlist = default_nlist(n)
        assert nlist >= 1 and (nlist == 1 or n / nlist >= 39)
    assert resolve_factory("IVF{nlist},PQ{m},RFlat", 100_000, 384) == "IVF1024,PQ48,RFlat"
    assert resolve_factory("HNSW32", 10, 32) == "HNSW32"
    with pytest.raises(ValueError, match="placeholders"):
        resolve_factory("IVF{bad},Flat", 1000, 32)
    with pytest.raises(ValueError, match="supported forms"):
        resolve_factory("LSH", 1000, 32)
    assert parse_sizes("2000, 5_000") == (2000, 5000)


def test_run_scores_against_exact_search_and_writes_outputs(tmp_path, source_npy):
    indexes = ("Flat", "IVF{nlist},PQ{m}", "IVF{nlist},PQ{m},RFlat", "HNSW32")
    spec = ScaleBenchSpec(vectors=source_npy, sizes=(5000, 2000), indexes=indexes, queries=100, latency_queries=20,
                          repeats=1, train_sample=5000, skip=("HNSW32@2000",), note="test run")  # fmt: skip
    out = tmp_path / "scale"
    result = run_scale_bench(spec, out)
    rows = {(row["n"], row["index"]): row for row in result["rows"]}
    assert len(rows) == 7 and (2000, "HNSW32") not in rows
    assert result["skipped"] == [{"n": 2000, "index": "HNSW32", "factory": "HNSW32"}]
    for n in (2000, 5000):
        assert rows[(n, "Flat")]["recall@10"] == 1.0
        assert rows[(n, "IVF{nlist},PQ{m},RFlat")]["recall@10"] >= rows[(n, "IVF{nlist},PQ{m}")]["recall@10"]
        assert rows[(n, "Flat")]["bytes_per_vector"] == 32 * 4
        assert rows[(n, "IVF{nlist},PQ{m}")]["factory"] == f"IVF{default_nlist(n)},PQ4"
    for row in result["rows"]:
        assert 0.0 <= row["recall@10"] <= 1.0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"]
        assert row["peak_rss_mb"] > 0 and row["build_s"] >= row["train_s"] >= 0
    assert rows[(5000, "IVF{nlist},PQ{m}")]["search_params"] == {"nprobe": default_nlist(5000) // 16}
    assert rows[(5000, "HNSW32")]["search_params"] == {"efSearch": 64}

    # the recorded statistics match a recomputation from regenerated vectors
    source = load_source_vectors(source_npy)
    base, base_src, queries, query_src = make_vectors(source, 2000, 100, seed=0)  # default: mix
    scores, truth = exact_search(queries, base, 10)
    stats = result["vectors"]["per_size"]["2000"]
    assert stats["same_source_fraction_of_exact_top_k"] == pytest.approx((base_src[truth] == query_src[:, None]).mean())
    assert stats["mean_exact_topk_last_score"] == pytest.approx(scores[:, -1].mean(), abs=1e-5)
    nearest = (queries @ source.T).max(axis=1).mean()
    assert stats["mean_cosine_to_nearest_source_queries"] == pytest.approx(nearest, abs=1e-5)
    pairwise = source @ source.T
    np.fill_diagonal(pairwise, -np.inf)
    ranked = -np.sort(-pairwise, axis=1)
    assert result["vectors"]["source_nearest_other_source_cosine"] == pytest.approx(ranked[:, 0].mean(), abs=1e-5)
    assert result["vectors"]["source_kth_other_source_cosine"] == pytest.approx(ranked[:, 9].mean(), abs=1e-5)
    profile = result["vectors"]["profile_vs_n"]
    assert list(profile) == ["37", "75", "150"]  # 150 sources held out as queries, the others in growing sets
    for m, row in profile.items():
        assert row["synthetic_top1"] == pytest.approx(exact_search(queries, base[: int(m)], 1)[0].mean(), abs=1e-5)
        assert 0 < row["real_topk_last"] < row["real_top1"] <= 1

    for name in FILES:
        assert (out / name).is_file(), name
    saved = json.loads((out / "scale.json").read_text())
    assert len(saved["rows"]) == 7 and saved["machine"]["threads"] == 1 and "faiss" in saved["machine"]
    assert "generator mix" in saved["vectors"]["method"] and saved["note"] == "test run"
    assert saved["vectors"]["generator"] == "mix" and saved["vectors"]["target_cosine"] == 0.87
    with (out / "scale.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 7
    markdown = (out / "scale.md").read_text()
    assert "| 2,000 | HNSW32 | HNSW32 | skipped" in markdown and "Note: test run" in markdown
    assert "dominant source" in markdown and "| 150 |" in markdown
    assert (out / "scale_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_runs_and_reports(tmp_path, source_npy):
    out = tmp_path / "cli"
    args = ["bench-scale", "--vectors", str(source_npy), "--sizes", "2000", "--index", "Flat", "--index", "HNSW32",
            "--queries", "30", "--latency-queries", "10", "--repeats", "1", "--out", str(out), "--json",
            "--generator", "noise"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "recall@10 1.0000" in summary["N=2000 Flat"] and summary["out"] == str(out)
    saved = json.loads((out / "scale.json").read_text())
    assert len(saved["rows"]) == 2 and saved["spec"]["generator"] == "noise"
    assert "i % n_sources" in saved["vectors"]["method"] and saved["vectors"]["target_cosine"] == 0.85


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vectors", "missing.npy"], "not found"),
        (["--vectors", "embeddings.txt"], ".npy"),
        (["--sizes", "5"], "too small"),
        (["--sizes", "10k"], "comma-separated integers"),
        (["--index", "LSH"], "supported forms"),
        (["--index", "IVF{x},Flat"], "placeholders"),
        (["--index", "IVF4096,Flat"], "training vectors"),
        (["--skip", "HNSW32"], "FACTORY@N"),
        (["--skip", "HNSW32@999"], "matches no run"),
        (["--noise", "pink"], "data, isotropic"),
        (["--generator", "blend"], "mix, noise"),
        (["--mix-neighbours", "0"], ">= 1"),
        (["--mix-alpha", "0"], "> 0"),
        (["--target-cosine", "1.5"], "(0, 1)"),
        (["--latency-queries", "500", "--queries", "100"], "cannot exceed"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, source_npy, extra, message):
    args = ["bench-scale", "--vectors", str(source_npy), "--sizes", "2000", "--out", str(tmp_path / "o")]
    if extra[0] == "--vectors":
        args[2] = str(tmp_path / extra[1])
        extra = []
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output
    assert not (tmp_path / "o" / "scale.json").exists()
