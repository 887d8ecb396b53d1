"""Exact inner-product top-k by blocks: the ground truth every approximate index is measured against."""

from __future__ import annotations

import numpy as np


def exact_search(
    queries: np.ndarray, vectors: np.ndarray, k: int, query_block: int = 1024, doc_block: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product, scanning documents in blocks so memory stays bounded.

    Returns (scores, positions), each (n_queries, min(k, n_docs)), best first; ties go to the lower position.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    queries = np.asarray(queries, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    if queries.ndim != 2 or vectors.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"dimension mismatch: queries {queries.shape}, vectors {vectors.shape}")
    k = min(k, len(vectors))
    all_scores = np.empty((len(queries), k), dtype=np.float32)
    all_ids = np.empty((len(queries), k), dtype=np.int64)
    for q0 in range(0, len(queries), query_block):
        q = queries[q0 : q0 + query_block]
        best_scores = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_ids = np.zeros((len(q), 0), dtype=np.int64)
        for d0 in range(0, len(vectors), doc_block):
            block = q @ vectors[d0 : d0 + doc_block].T
            ids = np.broadcast_to(np.arange(d0, d0 + block.shape[1], dtype=np.int64), block.shape)
            if block.shape[1] > k:  # keep only this block's k best before the exact merge
                keep = np.argpartition(-block, k - 1, axis=1)[:, :k]
                block, ids = np.take_along_axis(block, keep, axis=1), np.take_along_axis(ids, keep, axis=1)
            scores = np.concatenate([best_scores, block], axis=1)
            ids = np.concatenate([best_ids, ids], axis=1)
            # sort by (-score, position) so ties are deterministic
            order = np.lexsort((ids, -scores), axis=1)[:, :k]
            best_scores = np.take_along_axis(scores, order, axis=1)
            best_ids = np.take_along_axis(ids, order, axis=1)
        all_scores[q0 : q0 + len(q)] = best_scores
        all_ids[q0 : q0 + len(q)] = best_ids
    return all_scores, all_ids
