"""The row cache fed by a stream of chunks (the distributed engine's producer): the same chunks, checkpoints, resume
and entry as a per-chunk function, and a producer that misbehaves is refused, never trusted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from semsearch_common.array_cache import RowCache


def rows_of(indices: Sequence[int]) -> np.ndarray:
    """An independent definition of the expected rows: row i is (i, 2i, 3i)."""
    idx = np.asarray(list(indices), dtype=np.float32)
    return np.stack([idx, 2 * idx, 3 * idx], axis=1)


ORDER = [9, 2, 7, 0, 4, 1, 8, 3, 6, 5]


def test_a_stream_gets_every_chunk_in_order_and_gives_the_per_chunk_result(tmp_path: Path) -> None:
    handed: list[list[list[int]]] = []

    def stream(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        handed.append(chunks)
        for chunk in chunks:
            yield rows_of(chunk)

    streamed = RowCache(tmp_path / "a").compute(
        "k", 10, order=ORDER, chunk_size=4, compute_chunks=stream, meta={"m": 1}, show_progress=False
    )
    per_chunk = RowCache(tmp_path / "b").compute("k", 10, rows_of, order=ORDER, chunk_size=4, show_progress=False)
    assert handed == [[[9, 2, 7, 0], [4, 1, 8, 3], [6, 5]]]  # one call, the chunks in the caller's order
    np.testing.assert_allclose(streamed.vectors, rows_of(range(10)))
    np.testing.assert_allclose(streamed.vectors, per_chunk.vectors)
    assert streamed.meta["m"] == 1
    assert streamed.meta["n"] == 10
    assert streamed.meta["dim"] == 3
    again = RowCache(tmp_path / "a").compute("k", 10, compute_chunks=stream, show_progress=False)
    assert again.from_cache
    assert len(handed) == 1  # the same entry format: reused without streaming


def test_a_stream_interrupted_mid_way_resumes_with_only_the_remaining_chunks(tmp_path: Path) -> None:
    def dies_after_two(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        for number, chunk in enumerate(chunks):
            if number == 2:
                raise KeyboardInterrupt
            yield rows_of(chunk)

    cache = RowCache(tmp_path, checkpoint_seconds=-1.0)  # a checkpoint after every chunk
    with pytest.raises(KeyboardInterrupt):
        cache.compute("k", 10, order=ORDER, chunk_size=3, compute_chunks=dies_after_two, show_progress=False)
    assert (tmp_path / "k.partial.npy").exists()
    assert not (tmp_path / "k.npy").exists()
    handed: list[list[list[int]]] = []

    def stream(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        handed.append(chunks)
        yield from (rows_of(chunk) for chunk in chunks)

    resumed = cache.compute("k", 10, order=ORDER, chunk_size=3, compute_chunks=stream, show_progress=False)
    assert handed == [[[8, 3, 6], [5]]]  # 6 of 10 rows (two chunks of 3) were checkpointed
    np.testing.assert_allclose(resumed.vectors, rows_of(range(10)))
    assert not (tmp_path / "k.partial.npy").exists()


def test_a_per_chunk_checkpoint_resumes_as_a_stream(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(indices: Sequence[int]) -> np.ndarray:
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(len(indices))
        return rows_of(indices)

    cache = RowCache(tmp_path, checkpoint_seconds=-1.0)
    with pytest.raises(KeyboardInterrupt):
        cache.compute("k", 10, flaky, chunk_size=4, show_progress=False)
    handed: list[list[list[int]]] = []

    def stream(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        handed.append(chunks)
        yield from (rows_of(chunk) for chunk in chunks)

    resumed = cache.compute("k", 10, chunk_size=4, compute_chunks=stream, show_progress=False)
    assert handed == [[[4, 5, 6, 7], [8, 9]]]
    np.testing.assert_allclose(resumed.vectors, rows_of(range(10)))


def test_a_stream_stopped_by_an_error_is_closed(tmp_path: Path) -> None:
    closed: list[bool] = []

    def stream(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        try:
            yield rows_of(chunks[0])
            yield np.zeros((1, 3), dtype=np.float32)  # the wrong number of rows for chunk 1
            yield rows_of(chunks[2])
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match=r"chunk 1: the producer gave rows of shape \(1, 3\) for 4 items"):
        RowCache(tmp_path).compute("k", 10, chunk_size=4, compute_chunks=stream, show_progress=False)
    assert closed == [True]
    assert not (tmp_path / "k.npy").exists()


@pytest.mark.parametrize(
    ("produce", "message"),
    [
        (lambda chunks: (rows_of(c) for c in chunks[:-1]), "the producer stopped after 2 of 3 chunks"),
        (lambda chunks: (rows_of(c) for c in [*chunks, [0]]), "more than the 3 chunks asked for"),
    ],
)
def test_a_stream_with_too_few_or_too_many_chunks_is_refused(tmp_path: Path, produce, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RowCache(tmp_path).compute("k", 10, chunk_size=4, compute_chunks=produce, show_progress=False)
    assert not (tmp_path / "k.npy").exists()


def test_exactly_one_producer_is_required(tmp_path: Path) -> None:
    cache = RowCache(tmp_path)
    with pytest.raises(ValueError, match="exactly one producer"):
        cache.compute("k", 3, show_progress=False)
    with pytest.raises(ValueError, match="exactly one producer"):
        cache.compute("k", 3, rows_of, compute_chunks=lambda chunks: map(rows_of, chunks), show_progress=False)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        cache.compute("k", 3, rows_of, chunk_size=0, show_progress=False)
