"""`Rescorer`: the split `,RFlat` search returns what FAISS's own one-call refine returns; rescoring from the vector
file equals exact search over the candidates the codes give."""

from __future__ import annotations

import numpy as np
import pytest

from indexes.exact import exact_search
from indexes.faiss_index import IndexSpec, apply_search_params, build_index
from indexes.rescore import Rescorer
from indexes.vector_file import open_vectors, write_vectors

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
        split = Rescorer.of_refine(index)
        assert split is not None, factory
        for k_factor in (1, 4):
            apply_search_params(index, {"k_factor": k_factor})
            want_scores, want = index.search(queries, 10)
            got = split.search(queries, 10)
            np.testing.assert_allclose(got.scores, want_scores, atol=EPS, err_msg=f"{factory} k_factor={k_factor}")
            assert_same_ids_but_ties(got.positions, want, want_scores)
            assert got.rescore_seconds > 0
            assert got.search_seconds > 0
    assert Rescorer.of_refine(build_index(vectors, IndexSpec("HNSW16")).index) is None


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("factory", ["RaBitQ", "PQ8x4fs", "IVF8,SQ4", "HNSW16,SQ8"])
def test_rescoring_from_the_vector_file_equals_exact_search_on_the_candidates(unit_vectors, tmp_path, factory, dtype):
    vectors = unit_vectors(600, 32, seed=6)
    queries = unit_vectors(30, 32, seed=7)
    index = build_index(vectors, IndexSpec(factory)).index
    write_vectors(tmp_path / "v.npy", vectors, dtype)
    stored = open_vectors(tmp_path / "v.npy", 600, 32, dtype)
    rescorer = Rescorer.from_vectors(index, stored, 3)
    got = rescorer.search(queries, 10)
    _, candidates = index.search(queries, 30)
    rows = vectors.astype(np.float16).astype(np.float32) if dtype == "fp16" else vectors  # what the file holds
    for i in range(len(queries)):  # independent: exact search over this query's candidates, on the stored rows
        want_scores, want = exact_search(queries[i : i + 1], rows[candidates[i]], 10)
        np.testing.assert_allclose(got.scores[i], want_scores[0], atol=EPS)
        assert_same_ids_but_ties(got.positions[i : i + 1], candidates[i][want], want_scores)
    assert got.rescore_seconds > 0 and rescorer.candidates(10) == 30


def test_a_vector_file_of_another_shape_is_refused(unit_vectors, tmp_path):
    vectors = unit_vectors(100, 16, seed=1)
    index = build_index(vectors, IndexSpec("SQ4")).index
    write_vectors(tmp_path / "v.npy", vectors[:90], "fp16")
    with pytest.raises(ValueError, match=r"\(90, 16\) rows, the index \(100, 16\)"):
        Rescorer.from_vectors(index, open_vectors(tmp_path / "v.npy", 90, 16), 4)
    write_vectors(tmp_path / "w.npy", vectors, "fp16")
    with pytest.raises(ValueError, match="factor must be >= 1"):
        Rescorer.from_vectors(index, open_vectors(tmp_path / "w.npy", 100, 16), 0.5)


def test_fp16_rows_widen_exactly_as_numpy_does():
    """The lookup table gives numpy's own conversion for every float16 bit pattern (subnormals, infinities, NaN)."""
    from indexes.vector_file import as_float32

    every = np.arange(65_536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    np.testing.assert_array_equal(as_float32(every), every.astype(np.float32))
    assert as_float32(every).dtype == np.float32
    rows = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    assert as_float32(rows) is not rows and np.array_equal(as_float32(rows), rows)  # fp32 rows: a copy
