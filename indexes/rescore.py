"""Exact rescoring of candidates, split into two timed stages: candidate search on the codes, then exact scores.

Two sources of full-precision vectors:

- `,RFlat` indexes: FAISS's `IndexRefine` / `IndexRefineFlat` search the base index for `k * k_factor` candidates
  and re-score them against its refine index, in RAM, all in one call. `Rescorer.of_refine` does the same two steps
  itself, so a server can report how long each takes; its hits equal FAISS's own refine search (ties aside).
- a vector file on disk (`indexes.vector_file`): `Rescorer.from_vectors` searches the index for `k * oversample`
  candidates and rescores them with their rows of the memory-mapped file, read per query.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexes.faiss_index import SINGLE_QUERY_THREADS, import_faiss, search_index
from indexes.vector_file import VectorFile, as_float32

Rows = Callable[[np.ndarray], np.ndarray]  # sorted unique positions -> their full-precision rows, float32


@dataclass(frozen=True)
class TimedSearch:
    """Scores and positions (-1 pads) of a search, and the seconds spent in candidate search and rescoring."""

    scores: np.ndarray
    positions: np.ndarray
    search_seconds: float
    rescore_seconds: float


class Rescorer:
    """Search `base` for `k * factor` candidates, then re-score them exactly with their full-precision `rows`."""

    def __init__(self, base: Any, rows: Rows, factor: float | Callable[[], float], source: str) -> None:
        if not callable(factor) and not factor >= 1:
            raise ValueError(f"the candidate factor must be >= 1, got {factor}")
        faiss = import_faiss()
        self.base = base
        self.rows = rows
        self._factor = factor if callable(factor) else (lambda: float(factor))
        self.source = source  # "refine" (the index's ,RFlat vectors in RAM) or "vector_file"
        self.inner_product = base.metric_type == faiss.METRIC_INNER_PRODUCT

    @classmethod
    def of_refine(cls, index: Any) -> Rescorer | None:
        """The split of an index that re-ranks with full precision (IndexRefine / IndexRefineFlat), else None."""
        faiss = import_faiss()
        if not isinstance(index, faiss.IndexRefine):
            return None
        refine = faiss.downcast_index(index.refine_index)
        base = faiss.downcast_index(index.base_index)
        return cls(base, refine.reconstruct_batch, lambda: float(index.k_factor), "refine")  # k_factor read live

    @classmethod
    def from_vectors(cls, index: Any, vectors: VectorFile, oversample: float) -> Rescorer:
        """Rescore `index`'s top `k * oversample` with the rows of `vectors` (one per stored vector)."""
        if vectors.shape != (index.ntotal, index.d):
            raise ValueError(f"the vector file holds {vectors.shape} rows, the index ({index.ntotal}, {index.d})")
        return cls(index, vectors.rows, oversample, "vector_file")

    @property
    def factor(self) -> float:
        """Candidates taken per hit (`,RFlat`'s k_factor as now set, or the oversampling factor)."""
        return self._factor()

    @classmethod
    def from_array(cls, index: Any, vectors: np.ndarray, oversample: float) -> Rescorer:
        """As `from_vectors`, with the rows of an in-memory array (e.g. a benchmark's fp16 copy of the corpus)."""
        if vectors.shape != (index.ntotal, index.d):
            raise ValueError(f"the array holds {vectors.shape} rows, the index ({index.ntotal}, {index.d})")
        return cls(index, lambda positions: as_float32(vectors.take(positions, axis=0)), oversample, "array")

    def candidates(self, k: int) -> int:
        """Candidates one query at `k` takes from the codes (never fewer than k)."""
        return max(k, int(k * self.factor))

    def search(
        self, queries: np.ndarray, k: int, single_query_threads: int | None = SINGLE_QUERY_THREADS, params: Any = None
    ) -> TimedSearch:
        """Top-k by exact score among the base index's top `candidates(k)`, as FAISS's refine does.

        The candidate search follows `search_index`'s thread policy (`single_query_threads` for one query) and takes
        FAISS search `params` (e.g. an IDSelector) when given."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        started = time.perf_counter()
        _, candidates = search_index(
            self.base, queries, min(self.candidates(k), self.base.ntotal), single_query_threads, params
        )
        searched = time.perf_counter()
        scores, positions = self.rescore(queries, candidates, k)
        return TimedSearch(scores, positions, searched - started, time.perf_counter() - searched)

    def rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query's `candidates` (positions, -1 for none) by exact score."""
        n = len(queries)
        worst = np.finfo(np.float32).max  # FAISS pads missing results with -FLT_MAX (inner product) / FLT_MAX (L2)
        out_scores = np.full((n, k), -worst if self.inner_product else worst, dtype=np.float32)
        out_positions = np.full((n, k), -1, dtype=np.int64)
        valid = candidates >= 0
        if not valid.any():
            return out_scores, out_positions
        if n == 1:  # the served case: no de-duplication across queries to do
            cand = np.sort(candidates[0][valid[0]])  # sorted: a vector file is read in order
            self._rank(0, cand, self.rows(cand), queries[0], out_scores, out_positions)
            return out_scores, out_positions
        wanted = np.unique(candidates[valid])  # sorted: a vector file is read in order
        vectors = self.rows(wanted)  # only the candidates' full-precision vectors
        for i in range(n):  # one query at a time: k * factor rows each, never a (n, k * factor, d) block
            cand = candidates[i][valid[i]]
            if len(cand):
                self._rank(i, cand, vectors[np.searchsorted(wanted, cand)], queries[i], out_scores, out_positions)
        return out_scores, out_positions

    def _rank(
        self, row: int, cand: np.ndarray, vectors: np.ndarray, query: np.ndarray, scores: np.ndarray,
        positions: np.ndarray,
    ) -> None:  # fmt: skip
        """Write the best of `cand` (whose full vectors are `vectors`) by exact score into `row` of the outputs."""
        exact = vectors @ query if self.inner_product else np.sum((vectors - query) ** 2, axis=1)
        order = np.argsort(-exact if self.inner_product else exact, kind="stable")[: scores.shape[1]]
        scores[row, : len(order)] = exact[order]
        positions[row, : len(order)] = cand[order]
