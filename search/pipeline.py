"""A search pipeline: an encoder plus a stored FAISS index; and the function that builds one from a dataset."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.progress import make_progress
from compression.encoders import Encoder, encode_timed, load_encoder_from_identity
from indexes.faiss_index import (
    SINGLE_QUERY_THREADS,
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    search_index,
)
from indexes.rescore import RefineSplit, TimedSearch
from indexes.store import DisplayDoc, StoredIndex, check_encoder_matches, load_index_dir, save_index_dir
from search.data.datasets import Dataset, corpus_fingerprint
from search.embeddings import encode_corpus, load_cached_embeddings

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 300


@dataclass
class Hit:
    """One search result. Not frozen on purpose: a frozen dataclass sets each field through `object.__setattr__`,
    which made building k = 100 hits cost 2-3x more (~0.1 ms a query; issue 9, benchmarks/latency/)."""

    id: str
    score: float
    title: str
    snippet: str


@dataclass(frozen=True)
class Timings:
    """Stage durations of one request. `encode_ms` excludes tokenising where the encoder can split the two
    (`tokenize_ms` is 0 otherwise); `rescore_ms` is the exact re-ranking of an `,RFlat` index (0 for others)."""

    encode_ms: float
    search_ms: float
    total_ms: float
    tokenize_ms: float = 0.0
    rescore_ms: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    timings: Timings


@dataclass(frozen=True)
class BatchResult:
    """Hits per query, in query order, and the timings of the whole batch."""

    hits: list[list[Hit]]
    timings: Timings


@dataclass(frozen=True)
class BuildReport:
    """Where an index directory was written, and its stored metadata."""

    out_dir: Path
    meta: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The figures `semsearch index` prints: what was built, its size, and where the time went."""
        meta = self.meta
        return {
            "out": str(self.out_dir),
            "dataset": meta["dataset"],
            "documents": meta["ntotal"],
            "encoder": meta["encoder"]["name"],
            "doc_encoder": meta["doc_encoder"]["name"],
            "mode": meta["mode"],
            "index": meta["factory"],
            "search_params": meta["search_params"],
            "bytes_per_vector": meta["bytes_per_vector"],
            "index_bytes": meta["index_bytes"],
            "embeddings_from_cache": meta["build"]["encode_from_cache"],
            "train_seconds": meta["build"]["train_seconds"],
            "total_seconds": meta["build"]["total_seconds"],
        }


def build_index_dir(
    dataset: Dataset,
    encoder: Encoder,
    spec: IndexSpec,
    out_dir: Path | str,
    batch_size: int = 32,
    use_cache: bool = True,
    show_progress: bool = True,
    doc_encoder: Encoder | None = None,
) -> BuildReport:
    """Encode the corpus (cached), build and train the index, and save it with its metadata.

    `encoder` encodes queries. Documents are encoded by `doc_encoder` when given (asymmetric mode: e.g. the
    teacher encodes the corpus once, a student trained into its space encodes queries), else by `encoder`.
    """
    started = time.perf_counter()
    doc_encoder = doc_encoder or encoder
    if doc_encoder.dim != encoder.dim:
        raise ValueError(
            f"query encoder {encoder.name!r} ({encoder.dim} d) cannot search documents encoded by "
            f"{doc_encoder.name!r} ({doc_encoder.dim} d): an asymmetric pair must share one embedding space"
        )
    embeddings = encode_corpus(
        doc_encoder, dataset.corpus, batch_size=batch_size, use_cache=use_cache, show_progress=show_progress
    )
    with make_progress(show_progress) as progress:
        task = progress.add_task(f"building {spec.factory}", total=len(dataset.corpus), info="")

        def report(stage: str, done: int, total: int) -> None:
            if stage == "train":  # FAISS trains in one call: show an indeterminate bar meanwhile
                progress.update(task, description=f"training {spec.factory} on {total} vectors", total=None)
            else:
                progress.update(task, description=f"adding to {spec.factory}", completed=done, total=total)

        built = build_index(embeddings.vectors, spec, on_progress=report)
    meta = {
        "factory": spec.factory,
        "search_params": spec.resolved_search_params(),
        "train_sample": spec.train_sample,
        "seed": spec.seed,
        "encoder": encoder.identity(),
        "doc_encoder": doc_encoder.identity(),
        "mode": "symmetric" if doc_encoder.identity() == encoder.identity() else "asymmetric",
        "model_bytes": encoder.model_bytes(),
        "dataset": dataset.name,
        "dataset_path": str(dataset.path.resolve()) if dataset.path is not None else None,
        "corpus_hash": corpus_fingerprint(dataset.corpus),
        "embedding_key": embeddings.key,
        "bytes_per_vector": bytes_per_vector(built.index),
        "build": {
            "encode_seconds": embeddings.encode_seconds,
            "encode_from_cache": embeddings.from_cache,
            "train_seconds": built.train_seconds,
            "add_seconds": built.add_seconds,
            "total_seconds": time.perf_counter() - started,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }
    docs = [DisplayDoc(doc.title, doc.text[:SNIPPET_CHARS]) for doc in dataset.corpus]
    stored_meta = save_index_dir(out_dir, built.index, [doc.id for doc in dataset.corpus], docs, meta)
    return BuildReport(Path(out_dir), stored_meta)


class Pipeline:
    """Query encoder + index: `search(query, k)` returns hits and how long each stage took.

    `single_query_threads` caps FAISS's OpenMP team for one-query searches, in whichever thread searches (see
    `indexes.faiss_index.search_index`; None leaves the calling thread's default); batches keep the default team.
    """

    def __init__(
        self,
        encoder: Encoder,
        stored: StoredIndex,
        search_params: Mapping[str, float] | None = None,
        single_query_threads: int | None = SINGLE_QUERY_THREADS,
    ):
        check_encoder_matches(stored.meta, encoder.identity(), stored.path)
        if single_query_threads is not None and single_query_threads < 1:
            raise ValueError(f"single_query_threads must be >= 1 or None, got {single_query_threads}")
        self.encoder = encoder
        self.stored = stored
        self.single_query_threads = single_query_threads
        self.search_params = {**stored.meta.get("search_params", {}), **dict(search_params or {})}
        apply_search_params(stored.index, self.search_params)
        self._refine = RefineSplit.of(stored.index)  # None unless the index re-ranks with full precision

    @classmethod
    def load(
        cls, index_dir: Path | str, threads: int | None = None, search_params: Mapping[str, float] | None = None
    ) -> Pipeline:
        """Load an index directory and the encoder it was built with."""
        stored = load_index_dir(index_dir)
        encoder = load_encoder_from_identity(stored.meta["encoder"], threads=threads)
        return cls(encoder, stored, search_params)

    @property
    def meta(self) -> dict[str, Any]:
        return self.stored.meta

    def document_vectors(self, dataset: Dataset, show_progress: bool = False) -> np.ndarray:
        """Full-precision corpus vectors of this index's document encoder (from the cache, else re-encoded)."""
        cached = load_cached_embeddings(self.meta["embedding_key"], self.stored.index.ntotal)
        if cached is not None:
            return cached.vectors
        doc_identity = self.meta.get("doc_encoder", self.meta["encoder"])
        same = doc_identity == self.meta["encoder"]
        doc_encoder = self.encoder if same else load_encoder_from_identity(doc_identity)
        return encode_corpus(doc_encoder, dataset.corpus, show_progress=show_progress).vectors

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(queries), kind="query", batch_size=max(1, len(queries)))

    def encode_queries_timed(self, queries: Sequence[str]) -> tuple[np.ndarray, float]:
        """Encode the queries as one batch; also return the seconds spent tokenising (0 if not separable)."""
        return encode_timed(self.encoder, list(queries), kind="query", batch_size=max(1, len(queries)))

    def search_vectors(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search pre-encoded queries; returns scores and positions (-1 pads when fewer than k are found)."""
        timed = self.search_vectors_timed(vectors, k)
        return timed.scores, timed.positions

    def search_vectors_timed(self, vectors: np.ndarray, k: int) -> TimedSearch:
        """`search_vectors` with candidate search and exact rescoring (`,RFlat` indexes) timed apart."""
        k = min(k, self.stored.index.ntotal)
        if self._refine is None:
            started = time.perf_counter()
            scores, positions = search_index(self.stored.index, vectors, k, self.single_query_threads)
            return TimedSearch(scores, positions, time.perf_counter() - started, 0.0)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if vectors.ndim != 2 or vectors.shape[1] != self.stored.index.d:
            raise ValueError(f"queries must have shape (n, {self.stored.index.d}), got {vectors.shape}")
        return self._refine.search(vectors, k, self.single_query_threads)

    def ids_of(self, positions: np.ndarray) -> list[list[str]]:
        return self.stored.ids.to_ids(positions)

    def _hits(self, scores: np.ndarray, positions: np.ndarray) -> list[Hit]:
        """Hits of one query's row; Python numbers via `tolist` (numpy scalars cost more to index and convert)."""
        ids, docs = self.stored.ids.ids, self.stored.docs
        return [
            Hit(ids[pos], score, docs[pos].title, docs[pos].snippet)
            for score, pos in zip(scores.tolist(), positions.tolist(), strict=True)
            if pos >= 0
        ]

    def search(self, query: str, k: int = 10) -> SearchResult:
        if not query.strip():
            raise ValueError("query must not be empty or whitespace-only")
        batch = self.search_batch([query], k)
        return SearchResult(batch.hits[0], batch.timings)

    def search_batch(self, queries: Sequence[str], k: int = 10) -> BatchResult:
        """Encode all queries as one batch, search them together, and time each stage of the whole batch."""
        if not queries:
            raise ValueError("no queries: give at least one")
        blank = [i for i, query in enumerate(queries) if not query.strip()]
        if blank:
            raise ValueError(f"query must not be empty or whitespace-only: queries[{', '.join(map(str, blank))}]")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        started = time.perf_counter()
        vectors, tokenize_seconds = self.encode_queries_timed(queries)
        encoded = time.perf_counter()
        found = self.search_vectors_timed(vectors, k)
        hits = [self._hits(scores, positions) for scores, positions in zip(found.scores, found.positions, strict=True)]
        timings = Timings(
            encode_ms=(encoded - started - tokenize_seconds) * 1e3,
            search_ms=found.search_seconds * 1e3,
            total_ms=(time.perf_counter() - started) * 1e3,
            tokenize_ms=tokenize_seconds * 1e3,
            rescore_ms=found.rescore_seconds * 1e3,
        )
        return BatchResult(hits, timings)

    def describe(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "index_dir": str(self.stored.path),
            "encoder": meta["encoder"].get("name"),
            "doc_encoder": meta.get("doc_encoder", meta["encoder"]).get("name"),
            "mode": meta.get("mode", "symmetric"),
            "factory": meta["factory"],
            "search_params": self.search_params,
            "single_query_threads": self.single_query_threads,
            "ntotal": meta["ntotal"],
            "dim": meta["dim"],
            "bytes_per_vector": meta["bytes_per_vector"],
            "model_bytes": meta["model_bytes"],
            "dataset": meta["dataset"],
            "build": meta["build"],
        }


def result_as_dict(result: SearchResult) -> dict[str, Any]:
    return {"hits": [asdict(h) for h in result.hits], "timings": asdict(result.timings)}
