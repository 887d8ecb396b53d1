"""`RefineSplit` (candidate search, then numpy re-scoring) returns what FAISS's own one-call refine returns."""

from __future__ import annotations

import numpy as np

from indexes.faiss_index import IndexSpec, apply_search_params, build_index
from indexes.rescore import RefineSplit

EPS = 1e-5


def assert_same_ids_but_ties(got: np.ndarray, want: np.ndarray, want_scores: np.ndarray) -> None:
    """The two computations sum in different orders: ids may differ only where FAISS's scores tie within EPS (at
    the last rank the tie may be with the first candidate left out, which is not visible)."""
    last = want.shape[1] - 1
    for row in range(len(want)):
        for rank in np.flatnonzero(got[row] != want[row]):
            tied = np.abs(want_scores[row] - want_scores[row, rank]) <= 2 * EPS
            assert tied.sum() > 1 or rank == last, f"row {row} rank {rank}: {got[row, rank]} != {want[row, rank]}"


def test_rflat_split_equals_faiss_refine_on_random_unit_vectors(unit_vectors):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = unit_vectors(40, 32, seed=4)
    for factory in ("HNSW16,RFlat", "IVF16,PQ8x4,RFlat", "PQ8x4,RFlat", "SQ8,RFlat"):
        index = build_index(vectors, IndexSpec(factory)).index
        split = RefineSplit.of(index)
        assert split is not None, factory
        for k_factor in (1, 4):
            apply_search_params(index, {"k_factor": k_factor})
            want_scores, want = index.search(queries, 10)
            got = split.search(queries, 10)
            np.testing.assert_allclose(got.scores, want_scores, atol=EPS, err_msg=f"{factory} k_factor={k_factor}")
            assert_same_ids_but_ties(got.positions, want, want_scores)
            assert got.rescore_seconds > 0
            assert got.search_seconds > 0
    assert RefineSplit.of(build_index(vectors, IndexSpec("HNSW16")).index) is None
