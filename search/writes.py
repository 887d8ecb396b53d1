"""Writes to the corpus of one or more pipelines: upserts queued and encoded in the background, deletes at once.

`CorpusWriter` is what `semsearch add` / `delete` and the server's `/documents` routes call. Every pipeline it holds
keeps its own living index (`indexes.live`) and document store; a write is logged in every store under one version
number (a batch takes consecutive versions) before it is acknowledged, so every pipeline sees the same writes in the
same order:

- `upsert(docs)`: logged as pending in every store; acknowledged with its versions while still "encoding";
- the worker (`start`: a background thread at low CPU priority; `drain`: in the caller, for the CLI) takes pending
  upserts oldest first, encodes each batch once per distinct document encoder (outside every lock: searches go on),
  then, holding every pipeline's write lock, moves them into each store and index, so a search of any pipeline sees
  a batch wholly or not at all, and all pipelines at the same version;
- `delete(ids)`: applied to every store and index at once (nothing to encode), dropping pending upserts of the ids;
- a pipeline whose hidden (deleted but not removable) positions pass the threshold is compacted by the worker.

If a process dies between logging a write in two stores, the next start rolls the store left behind forward from
the one ahead (`reconcile`), before any write is applied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.encoders import Encoder, load_encoder_from_identity
from indexes.live import LiveIndex
from indexes.livestore import Deleted, LiveStore, NewDoc
from search.pipeline import Pipeline

logger = logging.getLogger(__name__)

ENCODE_BATCH = 16  # pending upserts encoded and applied at a time
PENDING_SHOWN = 20  # ids of pending upserts a search response lists
WORKER_NICE = 10  # the encoding thread's niceness (Linux: per thread), so searches keep the cores first


@dataclass
class Throughput:
    """Documents encoded and applied by the worker, and the seconds it spent on them."""

    documents: int = 0
    encode_seconds: float = 0.0
    apply_seconds: float = 0.0
    batches: int = 0
    last_error: str | None = None

    def describe(self) -> dict[str, Any]:
        busy = self.encode_seconds + self.apply_seconds
        return {
            "documents": self.documents,
            "batches": self.batches,
            "encode_seconds": round(self.encode_seconds, 3),
            "apply_seconds": round(self.apply_seconds, 3),
            "documents_per_second": round(self.documents / busy, 2) if busy else None,
            "last_error": self.last_error,
        }


class CorpusWriter:
    """Writes to the corpus of `pipelines` (see the module docstring); opens each for writes."""

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        batch_size: int = ENCODE_BATCH,
        compact: bool = True,
        threads: int | None = None,
        own_encoders: bool = False,
    ) -> None:
        if not pipelines:
            raise ValueError("no pipelines to write to")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pipelines = dict(pipelines)
        self.lives: dict[str, LiveIndex] = {name: p.enable_writes() for name, p in self.pipelines.items()}
        self.batch_size = batch_size
        self.compact_enabled = compact
        self._threads = threads
        self._own_encoders = own_encoders
        self._encoders: list[tuple[Encoder, list[str]]] | None = None  # loaded by the first drain, in its thread
        self._lock = threading.Lock()  # one write (log, apply, delete) at a time, across every store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.throughput = Throughput()
        self.in_flight = 0  # upserts being encoded now
        self.compacting: str | None = None  # the pipeline being compacted now
        self.reconcile()
        self._refresh_pending()

    def _document_encoders(self) -> list[tuple[Encoder, list[str]]]:
        """One encoder per distinct document-encoder identity, with the pipelines it serves: the pipelines' query
        encoders where they are the same model, unless `own_encoders` (then each is loaded here, with `threads`
        threads, in the calling thread: the worker's, whose low priority the encoder's threads inherit)."""
        if self._encoders is not None:
            return self._encoders
        threads = self._threads
        key = lambda identity: repr(sorted(identity.items()))  # noqa: E731
        loaded = {} if self._own_encoders else {key(p.meta["encoder"]): p.encoder for p in self.pipelines.values()}
        groups: dict[str, tuple[Encoder, list[str]]] = {}
        for name, pipeline in self.pipelines.items():
            identity = pipeline.meta.get("doc_encoder", pipeline.meta["encoder"])
            if key(identity) not in groups:
                encoder = loaded.get(key(identity)) or load_encoder_from_identity(identity, threads=threads)
                groups[key(identity)] = (encoder, [])
            groups[key(identity)][1].append(name)
        self._encoders = list(groups.values())
        return self._encoders

    @property
    def stores(self) -> dict[str, LiveStore]:
        return {name: live.store for name, live in self.lives.items()}  # type: ignore[misc]

    def _first_version(self) -> int:
        return max(store.version for store in self.stores.values()) + 1

    def reconcile(self) -> int:
        """Bring every store to the last version any of them logged (a kill between two stores' logs leaves one
        behind): pending upserts and deletes it lacks are logged into it. Returns the writes rolled forward."""
        stores = self.stores
        ahead_name = max(stores, key=lambda n: stores[n].version)
        ahead = stores[ahead_name]
        hashes = {name: p.meta.get("corpus_hash") for name, p in self.pipelines.items()}
        if len(set(hashes.values())) > 1:
            raise ValueError(f"these pipelines were built on different corpora ({', '.join(hashes)}): a write cannot "
                             "go to all of them; serve or write them apart")  # fmt: skip
        for name, store in stores.items():
            if store.version < ahead.version and ahead.applied_after(store.version):
                raise ValueError(
                    f"{name} (at write version {store.version}) and {ahead_name} (at {ahead.version}) took different "
                    f"writes (were they written apart?): write to them apart, or rebuild {name} from the same corpus"
                )
        rolled = 0
        with self._lock:
            for name, store in stores.items():
                if store.version >= ahead.version:
                    continue
                missing = ahead.writes_after(store.version)
                for kind, version, payload in missing:
                    if kind == "upsert":
                        store.log_upserts([payload], first_version=version)
                    else:
                        deleted = store.delete([payload], first_version=version)
                        self.lives[name].apply_deletes(deleted)
                    rolled += 1
                if store.version < ahead.version:  # versions of writes that left nothing behind (e.g. replaced)
                    store.bump_version(ahead.version)
                logger.warning("rolled %d writes forward into %s from %s", len(missing), name, ahead_name)
        return rolled

    # writes ---------------------------------------------------------------------------------------------------

    def upsert(self, docs: Sequence[NewDoc]) -> dict[str, Any]:
        """Log `docs` in every store (one version each, in order); they are searchable once encoded. Raises
        ValueError (nothing logged) for an empty batch or an id given twice."""
        if not docs:
            raise ValueError("no documents to upsert")
        with self._lock:
            first = self._first_version()
            for store in self.stores.values():
                store.log_upserts(docs, first_version=first)
            self._refresh_pending()
        self._wake.set()
        return {"first_version": first, "last_version": first + len(docs) - 1, "ids": [d.id for d in docs],
                "state": "encoding"}  # fmt: skip

    def delete(self, ids: Sequence[str]) -> list[Deleted]:
        """Delete `ids` from every store and index at once; return what each id was (from the first store)."""
        if not ids:
            raise ValueError("no document ids to delete")
        with self._lock:
            first = self._first_version()
            with self._all_writing():
                results = [store.delete(ids, first_version=first) for store in self.stores.values()]
                for live, deleted in zip(self.lives.values(), results, strict=True):
                    live.apply_deletes_locked(deleted)
            self._refresh_pending()
        return results[0]

    @contextlib.contextmanager
    def _all_writing(self) -> Any:
        with contextlib.ExitStack() as stack:
            for live in self.lives.values():
                stack.enter_context(live.lock.writing())
            yield

    def _refresh_pending(self) -> None:
        first = next(iter(self.stores.values()))
        ids = [item.doc.id for item in first.pending(PENDING_SHOWN)]
        self._pending_view = {"documents": first.pending_count(), "ids": ids}

    def encoding_summary(self) -> dict[str, Any]:
        """Upserts not yet searchable: their count and the oldest ids (refreshed at each write and batch, so a
        search reads it without touching the store)."""
        return self._pending_view

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The document as the first pipeline's store holds it (live or still encoding), or None."""
        return next(iter(self.stores.values())).get(doc_id)

    # the worker -----------------------------------------------------------------------------------------------

    def drain(self, on_progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None) -> int:
        """Encode and apply pending upserts until none is left (or `stop` is set); return how many were applied.
        `on_progress(done, remaining)` after each batch."""
        done = 0
        first_store = next(iter(self.stores.values()))
        while not (stop is not None and stop.is_set()):
            batch = first_store.pending(self.batch_size)
            if not batch:
                break
            self.in_flight = len(batch)
            try:
                started = time.perf_counter()
                texts = [item.doc.full_text() for item in batch]
                vectors: dict[str, dict[str, np.ndarray]] = {}
                for encoder, names in self._document_encoders():
                    encoded = encoder.encode(texts, kind="passage", batch_size=len(texts))
                    by_id = {item.doc.id: encoded[i] for i, item in enumerate(batch)}
                    vectors.update({name: by_id for name in names})
                encoded_at = time.perf_counter()
                with self._lock, self._all_writing():
                    for name, live in self.lives.items():
                        applied = live.store.apply_encoded(  # type: ignore[attr-defined]
                            (item, vectors[name][item.doc.id]) for item in batch
                        )
                        live.apply_locked(applied, vectors[name])
                    self._refresh_pending()
                self.throughput.encode_seconds += encoded_at - started
                self.throughput.apply_seconds += time.perf_counter() - encoded_at
                self.throughput.documents += len(batch)
                self.throughput.batches += 1
                done += len(batch)
            finally:
                self.in_flight = 0
            if self.compact_enabled:
                self.compact_if_needed()
            if on_progress is not None:
                on_progress(done, first_store.pending_count())
        return done

    def compact_if_needed(self) -> list[str]:
        """Compact every pipeline whose hidden positions pass the threshold; return their names."""
        compacted = []
        for name, live in self.lives.items():
            if live.needs_compaction():
                self.compacting = name
                try:
                    live.compact()
                finally:
                    self.compacting = None
                compacted.append(name)
        return compacted

    def start(self) -> None:
        """Run the worker in a background thread until `stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="semsearch-encoder", daemon=True)
        self._thread.start()
        self._wake.set()  # pending upserts a previous run left behind

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # per-thread niceness: Linux
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self.drain(stop=self._stop)
            except Exception as err:  # the worker must outlive one bad batch; the status says what failed
                logger.exception("encoding pending documents failed")
                self.throughput.last_error = f"{type(err).__name__}: {err}"[:300]
                self._stop.wait(5.0)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        self.stop()
        for live in self.lives.values():
            live.close()

    def status(self) -> dict[str, Any]:
        """The queue, the worker's throughput and each pipeline's store and index."""
        first = next(iter(self.stores.values()))
        return {
            "pending": first.pending_count(),
            "in_flight": self.in_flight,
            "compacting": self.compacting,
            "worker": "running" if self._thread is not None else "stopped",
            "throughput": self.throughput.describe(),
            "pipelines": {name: live.status() for name, live in self.lives.items()},
        }
