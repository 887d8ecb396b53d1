"""The resumable, chunked cache of computed row vectors, one home for it.

Corpus embeddings and the static encoder's token vectors are both "compute a float32 row per item, slowly": rows
are computed in chunks, in a caller-chosen order, with a checkpoint every minute; an interrupted run resumes where it
stopped, a finished one is reused at once, and a damaged entry is recomputed, never trusted. Rows come from a
function called per chunk or from a stream that yields the chunks in order (a distributed engine keeps computing while
finished chunks are saved); both lead to the same checkpoints and entries.

An entry is `<folder>/<key>.npy` (the rows) + `<key>.json` (n, dim, seconds and the caller's meta); a checkpoint is
`<key>.partial.npy` + `<key>.partial.json` (rows done so far, seconds spent).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch_common.atomic import save_array_atomic, write_json_atomic
from semsearch_common.progress import make_progress

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class CachedRows:
    """Rows in item order, where they came from and how long computing them took (then, if from the cache)."""

    vectors: np.ndarray
    key: str
    from_cache: bool
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return len(self.vectors) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class RowCache:
    """A folder of cached row arrays; `use_cache=False` computes without reading or writing anything."""

    folder: Path
    use_cache: bool = True
    checkpoint_seconds: float = CHECKPOINT_SECONDS

    def paths(self, key: str) -> tuple[Path, Path, Path, Path]:
        return (
            self.folder / f"{key}.npy",
            self.folder / f"{key}.json",
            self.folder / f"{key}.partial.npy",
            self.folder / f"{key}.partial.json",
        )

    def load(self, key: str, n: int) -> CachedRows | None:
        """The complete entry for `key` with `n` rows, or None (missing, unreadable or the wrong shape)."""
        if not self.use_cache:
            return None
        vectors_path, meta_path, _, _ = self.paths(key)
        if not (vectors_path.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            vectors = np.load(vectors_path, allow_pickle=False)
            expected = (int(meta["n"]), int(meta["dim"]))
            seconds = float(meta.get("seconds", meta.get("encode_seconds", 0.0)))
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            logger.warning("cache entry %s is unreadable (%s); recomputing", key, err)
            return None
        if vectors.shape != expected or expected[0] != n:
            logger.warning("cache entry %s has shape %s, expected %d rows; recomputing", key, vectors.shape, n)
            return None
        return CachedRows(vectors, key, True, seconds, meta)

    def _resume(self, key: str, n: int) -> tuple[np.ndarray | None, int, float]:
        _, _, partial_path, partial_meta = self.paths(key)
        if not (self.use_cache and partial_path.exists() and partial_meta.exists()):
            return None, 0, 0.0
        try:
            state = json.loads(partial_meta.read_text())
            partial = np.load(partial_path, allow_pickle=False)
            done, spent = int(state["done"]), float(state.get("seconds", 0.0))
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            logger.warning("ignoring an unreadable checkpoint for %s (%s)", key, err)
            return None, 0, 0.0
        if partial.ndim != 2 or partial.shape[0] != n or not 0 <= done <= n:
            return None, 0, 0.0
        logger.info("resuming %s at %d/%d", key, done, n)
        return partial, done, spent

    def compute(
        self,
        key: str,
        n: int,
        compute_rows: Callable[[Sequence[int]], np.ndarray] | None = None,
        order: Sequence[int] | None = None,
        chunk_size: int = 256,
        meta: Mapping[str, Any] | None = None,
        label: str = "computing",
        unit: str = "rows",
        show_progress: bool = True,
        compute_chunks: Callable[[list[list[int]]], Iterable[np.ndarray]] | None = None,
    ) -> CachedRows:
        """Return the cached rows for `key`, or compute them with exactly one of two producers:

        - `compute_rows(indices)` gives the rows of one chunk's items (called once per chunk);
        - `compute_chunks(chunks)` is handed every chunk still to do and yields their rows chunk by chunk, in order
          (a stream: a distributed engine keeps all its workers busy while finished chunks are checkpointed here).

        Items go in `order` (default 0..n-1) in chunks of `chunk_size`; a checkpoint is written every
        `checkpoint_seconds`, and the finished entry stores `meta` beside n, dim and seconds. Either producer leads
        to the same chunks, checkpoints, resume and entry.
        """
        if n < 1:
            raise ValueError(f"nothing to compute for {key}: no items")
        if (compute_rows is None) == (compute_chunks is None):
            raise ValueError("give exactly one producer: compute_rows (a chunk per call) or compute_chunks (a stream)")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        cached = self.load(key, n)
        if cached is not None:
            logger.info("reusing cached %s %s (%d x %d)", label, key, *cached.vectors.shape)
            return cached
        if self.use_cache:
            self.folder.mkdir(parents=True, exist_ok=True)
        vectors_path, meta_path, partial_path, partial_meta = self.paths(key)
        order = list(range(n)) if order is None else list(order)
        vectors, done, spent = self._resume(key, n)
        started = time.perf_counter() - spent
        last_checkpoint = time.perf_counter()
        chunks = [order[start : start + chunk_size] for start in range(done, n, chunk_size)]
        if compute_chunks is not None:
            stream: Iterable[np.ndarray] = compute_chunks(chunks)
        else:
            assert compute_rows is not None
            stream = (compute_rows(chunk) for chunk in chunks)
        produced = iter(stream)
        try:
            with make_progress(show_progress) as progress:
                task = progress.add_task(label, total=n, completed=done, info="")
                for number, chunk in enumerate(chunks):
                    rows = _next_rows(produced, len(chunk), number, len(chunks))
                    if vectors is None:
                        vectors = np.zeros((n, rows.shape[1]), dtype=np.float32)
                    vectors[chunk] = rows
                    done += len(chunk)
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=done, info=f"{done / max(elapsed, 1e-9):.1f} {unit}/s")
                    if self.use_cache and done < n and time.perf_counter() - last_checkpoint > self.checkpoint_seconds:
                        save_array_atomic(partial_path, vectors)
                        write_json_atomic(partial_meta, {"done": done, "seconds": elapsed})
                        last_checkpoint = time.perf_counter()
            if next(produced, None) is not None:
                raise ValueError(f"{key}: the producer yielded more than the {len(chunks)} chunks asked for")
        finally:
            close = getattr(produced, "close", None)
            if close is not None:  # a generator stopped early runs its clean-up (a Ray stream stops its workers)
                close()
        assert vectors is not None
        seconds = time.perf_counter() - started
        full_meta = {**(meta or {}), "n": n, "dim": int(vectors.shape[1]), "seconds": seconds}
        if self.use_cache:
            save_array_atomic(vectors_path, vectors)
            write_json_atomic(meta_path, full_meta)
            partial_path.unlink(missing_ok=True)
            partial_meta.unlink(missing_ok=True)
        logger.info("%s: %d %s in %.1f s (%.1f %s/s)", label, n, unit, seconds, n / max(seconds, 1e-9), unit)
        return CachedRows(vectors, key, False, seconds, full_meta)


def _next_rows(produced: Iterator[np.ndarray], size: int, number: int, total: int) -> np.ndarray:
    """The rows of chunk `number` (of `total`, `size` items) from a producer, as float32; ValueError if the producer
    stopped short or gave another number of rows."""
    try:
        rows = np.asarray(next(produced), dtype=np.float32)
    except StopIteration:
        raise ValueError(f"the producer stopped after {number} of {total} chunks") from None
    if rows.ndim != 2 or rows.shape[0] != size:
        raise ValueError(f"chunk {number}: the producer gave rows of shape {rows.shape} for {size} items")
    return rows
