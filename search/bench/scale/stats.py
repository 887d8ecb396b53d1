"""How synthetic vectors relate to the real ones: cosines to their sources, same-source share of the exact top-k,
and the neighbour-score profile (mean top-1 and top-k-th score) of real and synthetic corpora at the same N."""

from __future__ import annotations

import numpy as np

from indexes.exact import exact_search
from search.bench.scale.generators import PROFILE_STREAM, nearest_other_sources

PROFILE_QUERIES = 1000  # real embeddings held out as queries for the real neighbour-score profile
STATS_SAMPLE = 100_000  # corpus rows whose cosine to their own source is averaged
NEAREST_SAMPLE = 20_000  # corpus rows searched against the sources for their nearest-source cosine


def vector_stats(
    source: np.ndarray,
    base: np.ndarray,
    base_src: np.ndarray,
    queries: np.ndarray,
    query_src: np.ndarray,
    truth: np.ndarray,
) -> dict[str, float]:
    """How the synthetic vectors relate to the sources, and how much of the exact top-k shares the query's
    (dominant) source: 1.0 would make nearest-neighbour search a lookup of that source's clump."""
    sample = min(len(base), STATS_SAMPLE)
    base_cos = np.einsum("ij,ij->i", base[:sample], source[base_src[:sample]])
    query_cos = np.einsum("ij,ij->i", queries, source[query_src])
    nearest_base, _ = exact_search(base[: min(sample, NEAREST_SAMPLE)], source, 1)
    nearest_query, _ = exact_search(queries, source, 1)
    same_source = base_src[truth] == query_src[:, None]
    scores = np.einsum("ij,ikj->ik", queries, base[truth])
    return {
        "mean_cosine_to_source_corpus": float(base_cos.mean()),
        "std_cosine_to_source_corpus": float(base_cos.std()),
        "mean_cosine_to_source_queries": float(query_cos.mean()),
        "mean_cosine_to_nearest_source_corpus": float(nearest_base[:, 0].mean()),
        "mean_cosine_to_nearest_source_queries": float(nearest_query[:, 0].mean()),
        "same_source_fraction_of_exact_top_k": float(same_source.mean()),
        "mean_exact_top1_score": float(scores[:, 0].mean()),
        "mean_exact_topk_last_score": float(scores[:, -1].mean()),
    }


def source_neighbour_profile(source: np.ndarray, k: int) -> tuple[float, float]:
    """Mean cosine of each source to its nearest and its k-th nearest other source: the real data's own profile."""
    scores, _ = nearest_other_sources(source, k)
    return float(scores[:, 0].mean()), float(scores[:, -1].mean())


def profile_sizes(n_sources: int, k: int) -> tuple[int, list[int]]:
    """How many real embeddings are held out as queries, and the real corpus sizes the profile is measured at."""
    held_out = min(PROFILE_QUERIES, n_sources // 2)
    pool = n_sources - held_out
    return held_out, sorted({m for m in (pool // 4, pool // 2, pool) if m >= k})


def real_profile(source: np.ndarray, k: int, seed: int) -> dict[int, tuple[float, float]]:
    """Mean top-1 and top-k scores of held-out real embeddings against real corpora of growing size, so the synthetic
    corpus can be compared with real data at the same N."""
    held_out, sizes = profile_sizes(len(source), k)
    order = np.random.default_rng([seed, PROFILE_STREAM]).permutation(len(source))
    queries, pool = source[order[:held_out]], source[order[held_out:]]
    return {m: top1_topk(queries, pool[:m], k) for m in sizes}


def top1_topk(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[float, float]:
    """Mean exact top-1 and top-k-th inner-product score of `queries` in `corpus`."""
    scores, _ = exact_search(queries, corpus, k)
    return float(scores[:, 0].mean()), float(scores[:, -1].mean())
