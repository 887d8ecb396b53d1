"""The resumable row cache: computed once, reused, resumed after a crash, recomputed when damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semsearch_common.array_cache import RowCache


def rows_of(indices) -> np.ndarray:
    """An independent definition of the expected rows: row i is (i, 2i, 3i)."""
    idx = np.asarray(list(indices), dtype=np.float32)
    return np.stack([idx, 2 * idx, 3 * idx], axis=1)


def test_compute_then_reuse_in_any_order(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute(indices):
        calls.append(len(indices))
        return rows_of(indices)

    cache = RowCache(tmp_path)
    first = cache.compute("k", 10, compute, order=list(reversed(range(10))), chunk_size=3, show_progress=False)
    assert not first.from_cache
    assert calls == [3, 3, 3, 1]
    np.testing.assert_allclose(first.vectors, rows_of(range(10)))  # rows land in item order whatever the order
    again = cache.compute("k", 10, compute, show_progress=False)
    assert again.from_cache
    assert calls == [3, 3, 3, 1]
    assert again.meta["n"] == 10
    np.testing.assert_allclose(again.vectors, first.vectors)


def test_an_interrupted_computation_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    done: list[int] = []

    def flaky(indices):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(len(indices))
        return rows_of(indices)

    cache = RowCache(tmp_path, checkpoint_seconds=-1.0)  # a checkpoint after every chunk
    with pytest.raises(KeyboardInterrupt):
        cache.compute("k", 10, flaky, chunk_size=4, show_progress=False)
    resumed: list[int] = []
    result = cache.compute(
        "k", 10, lambda ix: (resumed.append(len(ix)), rows_of(ix))[1], chunk_size=4, show_progress=False
    )
    assert resumed == [2]  # 8 of 10 rows were checkpointed
    np.testing.assert_allclose(result.vectors, rows_of(range(10)))
    assert not (tmp_path / "k.partial.npy").exists()


def test_damaged_or_wrong_sized_entries_are_recomputed(tmp_path: Path) -> None:
    cache = RowCache(tmp_path)
    cache.compute("k", 5, rows_of, show_progress=False)
    (tmp_path / "k.npy").write_bytes(b"garbage")
    assert cache.load("k", 5) is None
    assert not cache.compute("k", 5, rows_of, show_progress=False).from_cache
    assert cache.load("k", 6) is None  # another item count never reuses an entry


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    RowCache(tmp_path / "c", use_cache=False).compute("k", 3, rows_of, show_progress=False)
    assert not any((tmp_path / "c").glob("k*"))
