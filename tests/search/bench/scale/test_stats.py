import numpy as np
import pytest

from indexes.exact import exact_search
from search.bench.scale.generators import make_vectors
from search.bench.scale.stats import profile_sizes, real_profile, source_neighbour_profile, vector_stats


def ranked_other_scores(source: np.ndarray) -> np.ndarray:
    """Each row's cosines to the other rows, best first (brute force in numpy)."""
    pairwise = source.astype(np.float64) @ source.T.astype(np.float64)
    np.fill_diagonal(pairwise, -np.inf)
    return -np.sort(-pairwise, axis=1)


def test_source_profile_matches_brute_force(unit_vectors):
    source = unit_vectors(300, 32, seed=1)
    top1, topk = source_neighbour_profile(source, 10)
    ranked = ranked_other_scores(source)
    assert top1 == pytest.approx(ranked[:, 0].mean(), abs=1e-5)
    assert topk == pytest.approx(ranked[:, 9].mean(), abs=1e-5)


def test_real_profile_holds_out_queries_and_grows_the_pool(unit_vectors):
    source = unit_vectors(300, 32, seed=1)
    assert profile_sizes(300, 10) == (150, [37, 75, 150])
    assert profile_sizes(5183, 10) == (1000, [1045, 2091, 4183])
    profile = real_profile(source, 10, seed=0)
    assert list(profile) == [37, 75, 150]
    full = profile[150]
    # the whole pool is every source but the held-out queries, whatever their order: recompute by brute force
    order = np.random.default_rng([0, 3]).permutation(300)
    scores = source[order[:150]].astype(np.float64) @ source[order[150:]].T.astype(np.float64)
    ranked = -np.sort(-scores, axis=1)
    assert full[0] == pytest.approx(ranked[:, 0].mean(), abs=1e-5)
    assert full[1] == pytest.approx(ranked[:, 9].mean(), abs=1e-5)
    assert profile[37][0] <= profile[75][0] <= full[0]  # a larger pool has closer nearest neighbours


def test_vector_stats_match_a_numpy_recomputation(unit_vectors):
    source = unit_vectors(300, 32, seed=1)
    base, base_src, queries, query_src = make_vectors(source, 2000, 100, seed=0, generator="noise")
    _, truth = exact_search(queries, base, 10)
    stats = vector_stats(source, base, base_src, queries, query_src, truth)
    base64, queries64, source64 = (x.astype(np.float64) for x in (base, queries, source))
    own = (base64 * source64[base_src]).sum(axis=1)
    assert stats["mean_cosine_to_source_corpus"] == pytest.approx(own.mean(), abs=1e-5)
    assert stats["std_cosine_to_source_corpus"] == pytest.approx(own.std(), abs=1e-5)
    assert stats["mean_cosine_to_nearest_source_queries"] == pytest.approx(
        (queries64 @ source64.T).max(1).mean(), abs=1e-5
    )
    assert stats["mean_cosine_to_nearest_source_corpus"] == pytest.approx((base64 @ source64.T).max(1).mean(), abs=1e-5)
    scores = -np.sort(-(queries64 @ base64.T), axis=1)  # brute-force scores; ids from exact_search are the truth given
    assert stats["mean_exact_top1_score"] == pytest.approx(scores[:, 0].mean(), abs=1e-5)
    assert stats["mean_exact_topk_last_score"] == pytest.approx(scores[:, 9].mean(), abs=1e-5)
    expected_share = np.mean([[base_src[j] == query_src[i] for j in row] for i, row in enumerate(truth)])
    assert stats["same_source_fraction_of_exact_top_k"] == pytest.approx(expected_share)
