"""A living index: an index directory's FAISS index kept equal to its document store as documents are written.

The store (`indexes.livestore`) is the source of truth; the index follows it:

- **adds**: each position the store gives is added in order (`add_with_ids` where the index keeps ids: IVF, or the
  `IndexIDMap2` a compaction wraps other kinds in; else appended, its position being its row);
- **removals**: IVF kinds and ID-mapped flat codes remove in place (`remove_ids`); HNSW graphs, and flat codes whose
  rows are their positions, hide the position instead (a tombstone set, excluded at search time through an
  `IDSelector`) until a compaction rebuilds them without it;
- **compaction** (`compact`): the live vectors are re-added to an empty copy of the trained index (no retraining,
  no re-encoding: vectors come from the vector file and the store), saved as the directory's next generation
  (`indexes.store.write_generation`), and swapped in after the writes made meanwhile are replayed onto it;
- **replay** (`open`): the saved generation holds positions below P and tombstones up to seq T (meta.json `live`);
  everything after comes from the store, so a kill at any moment loses no committed write and leaves no ghost.

Searches take the read side of a readers-writer lock, writes the write side (for the FAISS add or removal only:
encoding happens before, outside it). Metadata filters select positions in the store and search inside FAISS with
an `IDSelectorBitmap` (with nprobe/efSearch raised in proportion to the filter's selectivity), or score the
matching rows exactly when they are few (`scan_max`); kinds whose search takes no selector (PQ, fast-scan flat codes)
fetch more candidates until k survive.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from indexes.docstore import DOCS_DB, DocStore
from indexes.faiss_index import import_faiss, search_index
from indexes.filters import MetadataFilter
from indexes.livestore import Applied, Deleted, LiveStore
from indexes.rescore import Rescorer, TimedSearch
from indexes.rwlock import RWLock
from indexes.store import (
    WRITE_LOCK,
    DirectoryBusyError,
    StoredIndex,
    hold_write_lock,
    open_vector_file,
    sweep_generations,
    write_generation,
)
from semsearch_common.atomic import crash_point

logger = logging.getLogger(__name__)

__all__ = [  # the names other packages use
    "COMPACTION_STEPS", "SCAN_MAX", "WRITE_LOCK", "LiveIndex", "NotWritableError", "SearchOutcome", "check_writable",
]  # fmt: skip
COMPACTION_STEPS = ("compaction_swapped", "compaction_dropped")  # crash points after the new generation's meta.json
SCAN_MAX = 2048  # a filter matching at most this many documents is scored exactly (their rows), not searched
MAX_BOOST = 32  # nprobe / efSearch raised by at most this factor under a selective filter
COMPACT_FRACTION = 0.1  # compact when hidden positions pass this fraction of the index
COMPACT_MIN = 64  # ... and at least this many (a few deletes never rebuild a graph)
FILTER_CACHE = 32  # filters whose matching positions are kept until the next write


class NotWritableError(ValueError):
    """An index that cannot take writes (memory-mapped, lists on disk, `,RFlat`); the message says what to do."""


@dataclass(frozen=True)
class SearchOutcome:
    timed: TimedSearch
    matched: int | None  # documents the filter matched (None: no filter)
    method: str  # "index", "index+selector", "overfetch" or "exact_scan"


def check_writable(stored: StoredIndex) -> None:
    """Raise NotWritableError unless writes can be applied to this directory's index."""
    factory = stored.meta.get("factory", "")
    if stored.mmap:
        raise NotWritableError(f"{stored.path} is memory-mapped (--mmap): a mapped index is read-only; serve it "
                               "without --mmap to write to it")  # fmt: skip
    if stored.meta.get("on_disk_lists"):
        raise NotWritableError(f"{stored.path} keeps its inverted lists on disk (built by a sharded engine): they "
                               "are read-only; rebuild it with the local engine to write to it")  # fmt: skip
    if factory.endswith(",RFlat"):
        raise NotWritableError(f"{stored.path} ({factory}) re-ranks from RAM with ,RFlat, which cannot remove "
                               "vectors; rebuild it without ,RFlat (the vector file rescores alike)")  # fmt: skip


def _explicit_ids(index: Any) -> bool:
    faiss = import_faiss()
    return isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap) or faiss.try_extract_index_ivf(index) is not None


def _inner(index: Any) -> Any:
    faiss = import_faiss()
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap) else index


def _removes_in_place(index: Any) -> bool:
    """IVF kinds and ID-mapped flat codes remove in place; HNSW cannot, implicit rows would renumber."""
    faiss = import_faiss()
    if faiss.try_extract_index_ivf(index) is not None and not isinstance(index, faiss.IndexIDMap2):
        return True
    return isinstance(index, faiss.IndexIDMap2) and not isinstance(_inner(index), faiss.IndexHNSW)


def _hnsw(index: Any) -> Any | None:
    faiss = import_faiss()
    inner = _inner(index)
    return inner.hnsw if isinstance(inner, faiss.IndexHNSW) else None


class LiveIndex:
    """The FAISS index of one directory, kept current with its `LiveStore` (see the module docstring)."""

    def __init__(self, stored: StoredIndex, store: DocStore, scan_max: int = SCAN_MAX) -> None:
        self.stored = stored
        self.store = store
        self.scan_max = scan_max
        self.lock = RWLock()
        self._compact_lock = threading.Lock()
        self.index = stored.index
        self.vectors = stored.vectors
        live = stored.meta.get("live") or {}
        self.saved_positions = int(live.get("positions", stored.index.ntotal))
        self.saved_tombstones = int(live.get("tombstone_seq", 0))
        self.hidden: set[int] = set()
        self._hidden_version = 0
        self._changes = 0  # adds and removals applied (what a cached filter answer depends on)
        self._hidden_cache: tuple[int, np.ndarray, Any] | None = None
        self._cache_lock = threading.Lock()
        self._allowed_cache: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._buffer = np.empty((0, stored.index.d), dtype=np.float32)  # rows of positions >= saved_positions
        self._next = self.saved_positions
        self._selector_ok: bool | None = None
        self.compactions = 0

    @classmethod
    def open(cls, stored: StoredIndex, writable: bool = True, scan_max: int = SCAN_MAX) -> LiveIndex:
        """Replay onto `stored.index` what its saved generation lacks from the store. `writable`: open the store
        for writes (and sweep the files of an interrupted save); else read what others wrote, read-only."""
        if not writable:
            live = cls(stored, stored.docs, scan_max)
            live.replay()
            return live
        check_writable(stored)
        try:
            lock = hold_write_lock(stored.path)
        except DirectoryBusyError as err:
            raise NotWritableError(str(err)) from err
        try:
            store = LiveStore.open(stored.path / DOCS_DB)
            stored.docs.close()
            stored = StoredIndex(stored.index, store, stored.meta, stored.path, stored.mmap, stored.vectors)
            live = cls(stored, store, scan_max)
            live._write_lock = lock
            swept = sweep_generations(stored.path, stored.meta)
            if swept:
                logger.info("removed %s: files of an interrupted or superseded save", ", ".join(swept))
            live.replay()
        except BaseException:
            lock.close()  # a directory that failed to open is not left locked
            raise
        return live

    @property
    def writable(self) -> bool:
        return isinstance(self.store, LiveStore)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def replay(self) -> tuple[int, int]:
        """Apply the store's positions and tombstones that the index lacks; return (added, removed)."""
        next_pos = self.store.next_pos  # first: another process may write meanwhile (a read-only view)
        positions, vectors = self.store.vectors_from(self._next, self.dim)
        keep = positions < next_pos
        positions, vectors = positions[keep], vectors[keep]
        expected = next_pos - self._next
        if len(positions) != expected or (len(positions) and positions[0] != self._next):
            raise ValueError(f"{self.store.path}: the store holds {len(positions)} vectors from position {self._next} "
                             f"but gave out {expected} positions since; the directory is damaged")  # fmt: skip
        dead = self.store.tombstones_after(self.saved_tombstones)[1]
        with self.lock.writing():
            self._add(positions, vectors)
            self._remove(dead[dead < self._next])
        if len(positions) or len(dead):
            logger.info("replayed %d added and %d removed documents onto %s", len(positions), len(dead),
                        self.stored.path)  # fmt: skip
        return len(positions), len(dead)

    def _add(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` at `positions` (consecutive, from the next position); the caller holds the write lock."""
        if not len(positions):
            return
        if positions[0] != self._next or np.any(np.diff(positions) != 1):
            raise ValueError(f"positions must continue from {self._next} without gaps, got {positions[:3]}...")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._changes += 1
        if _explicit_ids(self.index):
            self.index.add_with_ids(vectors, np.ascontiguousarray(positions, dtype=np.int64))
        else:
            if self.index.ntotal != positions[0]:
                raise ValueError(f"the index holds {self.index.ntotal} rows, so {positions[0]} cannot be its next")
            self.index.add(vectors)
        used = self._next - self.saved_positions
        if used + len(vectors) > len(self._buffer):  # grow by doubling: appends stay linear overall
            grown = np.empty((max(2 * len(self._buffer), used + len(vectors), 64), self.dim), dtype=np.float32)
            grown[:used] = self._buffer[:used]
            self._buffer = grown
        self._buffer[used : used + len(vectors)] = vectors
        self._next = int(positions[-1]) + 1

    @property
    def _extra(self) -> np.ndarray:
        """Rows of the positions added since the saved generation (position saved_positions + i is row i)."""
        return self._buffer[: self._next - self.saved_positions]

    def _remove(self, positions: np.ndarray) -> None:
        """Remove (or hide) `positions`; the caller holds the write lock."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return
        self._changes += 1
        if _removes_in_place(self.index):
            self.index.remove_ids(import_faiss().IDSelectorBatch(positions))
        else:
            self.hidden.update(positions.tolist())
            self._hidden_version += 1

    def apply(self, applied: list[Applied], vectors: Mapping[str, np.ndarray]) -> None:
        """Add the upserts the store just applied (`vectors` by id) and remove what they replaced."""
        with self.lock.writing():
            self.apply_locked(applied, vectors)

    def apply_locked(self, applied: list[Applied], vectors: Mapping[str, np.ndarray]) -> None:
        """`apply`, for a caller holding the write lock (e.g. one applying a batch to several indexes at once)."""
        if not applied:
            return
        positions = np.array([a.pos for a in applied], dtype=np.int64)
        self._add(positions, np.stack([vectors[a.id] for a in applied]))
        self._remove(np.array([a.replaced for a in applied if a.replaced is not None], dtype=np.int64))

    def apply_deletes(self, deleted: list[Deleted]) -> None:
        with self.lock.writing():
            self.apply_deletes_locked(deleted)

    def apply_deletes_locked(self, deleted: list[Deleted]) -> None:
        self._remove(np.array([d.pos for d in deleted if d.pos is not None], dtype=np.int64))

    # rows -----------------------------------------------------------------------------------------------------

    def has_rows(self) -> bool:
        """Whether full-precision rows exist for every position (a vector file, plus the rows added since)."""
        return self.vectors is not None or self.saved_positions == 0

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Full-precision rows (float32) of sorted `positions`: the vector file below the saved generation's end,
        the rows added since above it."""
        positions = np.asarray(positions, dtype=np.int64)
        split = int(np.searchsorted(positions, self.saved_positions))
        parts = []
        if split:
            if self.vectors is None:
                raise ValueError(f"{self.stored.path} keeps no vector file: full-precision rows are not available")
            parts.append(self.vectors.rows(positions[:split]))
        if split < len(positions):
            parts.append(self._extra[positions[split:] - self.saved_positions])
        return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty((0, self.dim), "f4")

    def _rows_range(self, start: int, stop: int, live: np.ndarray) -> np.ndarray:
        """Rows [start, stop) for a saved vector file: live positions' vectors, zeros elsewhere."""
        out = np.zeros((stop - start, self.dim), dtype=np.float32)
        lo, hi = np.searchsorted(live, [start, stop])
        wanted = live[lo:hi]
        if len(wanted):
            out[wanted - start] = self.rows(wanted)
        return out

    # search ---------------------------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self.lock.reading():
            yield

    def search(
        self,
        queries: np.ndarray,
        k: int,
        rescorer_factor: float | None,
        single_query_threads: int | None,
        where: MetadataFilter | None = None,
        rescore_rows: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> SearchOutcome:
        """Top-k of the live documents (those passing `where`, when given); the caller holds `reading()`.
        `rescorer_factor`: rescore k x factor candidates with their full-precision rows (None: scores as searched)."""
        faiss = import_faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        allowed = None
        if where is not None:
            allowed = self._allowed(where)
            if len(allowed) == 0:
                return SearchOutcome(_empty(len(queries), k), 0, "exact_scan")
            if len(allowed) <= self.scan_max and self.has_rows():
                return SearchOutcome(self._scan(queries, k, allowed), len(allowed), "exact_scan")
        live = max(1, len(self.store))
        k = min(k, live if allowed is None else len(allowed))
        keep: Callable[[np.ndarray], np.ndarray] | None = None
        selector = None
        if allowed is not None:
            mask = np.zeros(self._next, dtype=bool)
            mask[allowed] = True
            bitmap = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(self._next, faiss.swig_ptr(bitmap))
            selector._bitmap = bitmap  # kept alive with the selector
            keep = lambda cand: mask[np.clip(cand, 0, None)] & (cand >= 0)  # noqa: E731
        elif self.hidden:
            hidden, selector = self._hidden_selector()
            keep = lambda cand: ~np.isin(cand, hidden)  # noqa: E731
        boost = 1.0 if allowed is None else min(MAX_BOOST, live / len(allowed))
        rescorer = None
        if rescorer_factor is not None:
            rescorer = Rescorer(self.index, rescore_rows or self.rows, rescorer_factor, "vector_file")
        if selector is None:
            method = "index"
            timed = _search(self.index, queries, k, rescorer, single_query_threads, None)
        elif self._supports_selector():
            method = "index+selector"
            params = _selector_params(self.index, selector, boost)
            timed = _search(self.index, queries, k, rescorer, single_query_threads, params)
        else:
            method = "overfetch"
            assert keep is not None
            fraction = (len(allowed) if allowed is not None else live) / max(1, self.index.ntotal)
            timed = self._overfetch(queries, k, rescorer, single_query_threads, keep, fraction)
        return SearchOutcome(timed, None if allowed is None else len(allowed), method)

    def _allowed(self, where: MetadataFilter) -> np.ndarray:
        """Sorted positions passing `where`, less hidden ones; the last few filters' answers are kept until the
        next write (a repeated filter costs no scan of the store)."""
        key = (where, self._changes)
        with self._cache_lock:
            found = self._allowed_cache.get(key)
            if found is not None:
                self._allowed_cache.move_to_end(key)
                return found
        allowed = self.store.matching(where)
        if self.hidden and len(allowed):
            allowed = allowed[~np.isin(allowed, self._hidden_selector()[0])]
        with self._cache_lock:
            self._allowed_cache[key] = allowed
            while len(self._allowed_cache) > FILTER_CACHE:
                self._allowed_cache.popitem(last=False)
        return allowed

    def _hidden_selector(self) -> tuple[np.ndarray, Any]:
        """The hidden positions (sorted) and a selector excluding them, rebuilt only after they change."""
        cached = self._hidden_cache
        if cached is None or cached[0] != self._hidden_version:
            faiss = import_faiss()
            hidden = np.sort(np.fromiter(self.hidden, np.int64, len(self.hidden)))
            batch = faiss.IDSelectorBatch(hidden)
            selector = faiss.IDSelectorNot(batch)
            selector._inner = batch  # kept alive with the selector
            cached = self._hidden_cache = (self._hidden_version, hidden, selector)
        return cached[1], cached[2]

    def _scan(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> TimedSearch:
        started = time.perf_counter()
        rows = self.rows(allowed)
        scores = queries @ rows.T
        k = min(k, len(allowed))
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return TimedSearch(
            np.take_along_axis(scores, order, axis=1), allowed[order], time.perf_counter() - started, 0.0
        )

    def _overfetch(
        self,
        queries: np.ndarray,
        k: int,
        rescorer: Rescorer | None,
        threads: int | None,
        keep: Callable[[np.ndarray], np.ndarray],
        fraction: float,
    ) -> TimedSearch:
        """Search for more candidates than needed, drop the excluded, and double until every query has enough."""
        need = rescorer.candidates(k) if rescorer is not None else k
        fetch = min(self.index.ntotal, max(need, math.ceil(need / max(fraction, 1e-6) * 1.5)))
        started = time.perf_counter()
        while True:
            scores, cand = search_index(self.index, queries, fetch, threads)
            mask = (cand >= 0) & keep(cand)
            if mask.sum(axis=1).min() >= need or fetch >= self.index.ntotal:
                break
            fetch = min(self.index.ntotal, fetch * 2)
        searched = time.perf_counter()
        out_scores = np.full((len(queries), need), -np.finfo(np.float32).max, dtype=np.float32)
        out_cand = np.full((len(queries), need), -1, dtype=np.int64)
        for i in range(len(queries)):
            row = cand[i][mask[i]][:need]
            out_cand[i, : len(row)] = row
            out_scores[i, : len(row)] = scores[i][mask[i]][:need]
        if rescorer is None:
            return TimedSearch(out_scores[:, :k], out_cand[:, :k], searched - started, 0.0)
        scores, positions = rescorer.rescore(queries, out_cand, k)
        return TimedSearch(scores, positions, searched - started, time.perf_counter() - searched)

    def _supports_selector(self) -> bool:
        """Whether this index's search takes an IDSelector (FAISS refuses it for PQ and fast-scan flat codes)."""
        if self._selector_ok is None:
            faiss = import_faiss()
            selector = faiss.IDSelectorRange(0, 1)
            try:
                self.index.search(
                    np.zeros((1, self.dim), dtype=np.float32), 1, params=_selector_params(self.index, selector, 1.0)
                )
                self._selector_ok = True
            except RuntimeError:
                self._selector_ok = False
        return self._selector_ok

    # compaction -----------------------------------------------------------------------------------------------

    def needs_compaction(self) -> bool:
        hidden = len(self.hidden)
        return hidden >= COMPACT_MIN and hidden >= COMPACT_FRACTION * max(1, self.index.ntotal)

    def compact(self) -> dict[str, Any]:
        """Rebuild the index from the live vectors, save it as the next generation and swap it in (writes made
        meanwhile are replayed onto it first); return the new meta. One compaction at a time."""
        faiss = import_faiss()
        if not isinstance(self.store, LiveStore):
            raise NotWritableError(f"{self.stored.path} is open read-only: compaction needs it open for writes")
        with self._compact_lock:
            started = time.perf_counter()
            with self.lock.writing():  # a consistent cut: positions below P, tombstones up to T
                cut_positions, cut_tombstones = self.store.next_pos, self.store.last_tombstone()
                live = self.store.live_positions()
                if self._next != cut_positions:
                    raise RuntimeError(f"the index has {self._next} positions, the store {cut_positions}: apply "
                                       "pending writes before compacting")  # fmt: skip
                old_vectors = self.vectors
            # rows below the cut never change (the vector file, and rows appended since): read outside the lock
            vectors = self.rows(live)
            empty = faiss.deserialize_index(faiss.serialize_index(_inner(self.index)))
            empty.reset()
            rebuilt = empty if faiss.try_extract_index_ivf(empty) is not None else faiss.IndexIDMap2(empty)
            if len(live):
                rebuilt.add_with_ids(vectors, live)
            meta = write_generation(
                self.stored.path, rebuilt, self.stored.meta, cut_positions,
                (lambda a, b: self._rows_range(a, b, live)) if old_vectors is not None else None, cut_tombstones,
            )  # fmt: skip
            new_vectors = open_vector_file(self.stored.path, meta)
            if new_vectors is not None and old_vectors is not None and old_vectors.prefetch:
                new_vectors = replace(new_vectors, prefetch=True)
            with self.lock.writing():  # catch up with what was written meanwhile, then swap
                positions = np.arange(cut_positions, self._next, dtype=np.int64)
                tail = self._extra[cut_positions - self.saved_positions :].copy()
                dead = self.store.tombstones_after(cut_tombstones)[1]
                previous = self.stored
                self.index, self.vectors = rebuilt, new_vectors
                self.stored = StoredIndex(rebuilt, self.store, meta, previous.path, False, new_vectors)
                self.saved_positions, self.saved_tombstones = cut_positions, cut_tombstones
                self._buffer = np.empty((0, self.dim), dtype=np.float32)
                self._next = cut_positions
                self.hidden = set()
                self._hidden_version += 1
                self._selector_ok = None
                self._add(positions, tail)
                self._remove(dead)
            crash_point("compaction_swapped")
            self.store.drop_vectors_below(cut_positions)
            crash_point("compaction_dropped")
            sweep_generations(self.stored.path, meta)
            self.compactions += 1
            logger.info("compacted %s: %d live documents in %.2f s (generation %d)", self.stored.path, len(live),
                        time.perf_counter() - started, meta["live"]["generation"])  # fmt: skip
            return meta

    def status(self) -> dict[str, Any]:
        counts = self.store.counts()
        return {
            **counts,
            "index_ntotal": int(self.index.ntotal),
            "hidden": len(self.hidden),
            "removes_in_place": _removes_in_place(self.index),
            "generation": int(self.stored.meta.get("live", {}).get("generation", 0)),
            "compactions": self.compactions,
        }

    def close(self) -> None:
        self.store.close()
        lock = getattr(self, "_write_lock", None)
        if lock is not None:
            lock.close()  # releases the flock


def _empty(n: int, k: int) -> TimedSearch:
    return TimedSearch(np.full((n, k), -np.finfo(np.float32).max, "f4"), np.full((n, k), -1, np.int64), 0.0, 0.0)


def _selector_params(index: Any, selector: Any, boost: float) -> Any:
    """Search parameters carrying `selector`, with the index's nprobe / efSearch raised by `boost`."""
    faiss = import_faiss()
    ivf = faiss.try_extract_index_ivf(_inner(index))
    if ivf is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = min(int(ivf.nlist), math.ceil(ivf.nprobe * boost))
    elif (hnsw := _hnsw(index)) is not None:
        params = faiss.SearchParametersHNSW()
        params.efSearch = math.ceil(hnsw.efSearch * boost)
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    params._selector = selector  # the parameters hold a raw pointer: keep the selector alive with them
    return params


def _search(
    index: Any, queries: np.ndarray, k: int, rescorer: Rescorer | None, threads: int | None, params: Any
) -> TimedSearch:
    if rescorer is not None:
        return rescorer.search(queries, k, threads, params=params)
    started = time.perf_counter()
    scores, positions = search_index(index, queries, k, threads, params)
    return TimedSearch(scores, positions, time.perf_counter() - started, 0.0)
