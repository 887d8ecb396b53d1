"""Full-precision re-ranking (`...,RFlat` indexes) split into two timed stages: candidate search and exact rescore.

FAISS's `IndexRefine` / `IndexRefineFlat` search the base index for `k * k_factor` candidates and re-score them
against the full-precision vectors of its refine index, all in one call. `RefineSplit` does the same two steps
itself so a server can report how long each takes; its hits equal FAISS's own refine search (ties aside).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexes.faiss_index import SINGLE_QUERY_THREADS, import_faiss, search_index


@dataclass(frozen=True)
class TimedSearch:
    """Scores and positions (-1 pads) of a search, and the seconds spent in candidate search and rescoring."""

    scores: np.ndarray
    positions: np.ndarray
    search_seconds: float
    rescore_seconds: float


class RefineSplit:
    """Search a refine index's base for candidates, then re-score them exactly against its stored vectors."""

    def __init__(self, index: Any) -> None:
        faiss = import_faiss()
        self.index = index
        self.base = faiss.downcast_index(index.base_index)
        self.refine = faiss.downcast_index(index.refine_index)
        self.inner_product = index.metric_type == faiss.METRIC_INNER_PRODUCT

    @classmethod
    def of(cls, index: Any) -> RefineSplit | None:
        """A split for `index` when it re-ranks with full precision (IndexRefine / IndexRefineFlat), else None."""
        faiss = import_faiss()
        return cls(index) if isinstance(index, faiss.IndexRefine) else None

    @property
    def k_factor(self) -> float:
        return float(self.index.k_factor)

    def search(
        self, queries: np.ndarray, k: int, single_query_threads: int | None = SINGLE_QUERY_THREADS
    ) -> TimedSearch:
        """Top-k by exact score among the base index's top `int(k * k_factor)` candidates, as FAISS's refine does.

        The candidate search follows `search_index`'s thread policy (`single_query_threads` for one query)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        started = time.perf_counter()
        k_base = max(k, int(k * self.k_factor))
        _, candidates = search_index(self.base, queries, k_base, single_query_threads)
        searched = time.perf_counter()
        scores, positions = self._rescore(queries, candidates, k)
        return TimedSearch(scores, positions, searched - started, time.perf_counter() - searched)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        worst = np.finfo(np.float32).max  # FAISS pads missing results with -FLT_MAX (inner product) / FLT_MAX (L2)
        out_scores = np.full((n, k), -worst if self.inner_product else worst, dtype=np.float32)
        out_positions = np.full((n, k), -1, dtype=np.int64)
        valid = candidates >= 0
        if not valid.any():
            return out_scores, out_positions
        wanted = np.unique(candidates[valid])
        vectors = self.refine.reconstruct_batch(wanted)  # only the candidates' full-precision vectors
        for i in range(n):  # one query at a time: k * k_factor rows each, never a (n, k * k_factor, d) block
            cand = candidates[i][valid[i]]
            if len(cand) == 0:
                continue
            found = vectors[np.searchsorted(wanted, cand)]
            if self.inner_product:
                exact = found @ queries[i]
                order = np.argsort(-exact, kind="stable")[:k]
            else:
                exact = np.sum((found - queries[i]) ** 2, axis=1)
                order = np.argsort(exact, kind="stable")[:k]
            out_scores[i, : len(order)] = exact[order]
            out_positions[i, : len(order)] = cand[order]
        return out_scores, out_positions
