"""A search pipeline: an encoder plus a stored FAISS index; and the function that builds one from a dataset."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders import Encoder, encode_timed, load_encoder_from_identity
from indexes.docstore import SNIPPET_CHARS
from indexes.faiss_index import (
    SINGLE_QUERY_THREADS,
    BuiltIndex,
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    check_oversample,
    openmp_threads,
    search_index,
    split_rescore_params,
)
from indexes.filters import MetadataFilter
from indexes.live import LiveIndex, check_writable
from indexes.rescore import Rescorer, TimedSearch
from indexes.store import (
    META_FILE,
    DisplayDoc,
    StoredIndex,
    check_encoder_matches,
    load_index_dir,
    save_index_dir,
)
from indexes.vector_file import DEFAULT_VECTOR_DTYPE, NO_VECTORS
from search.data.datasets import Dataset, corpus_fingerprint
from search.embeddings import CorpusEmbeddings, encode_corpus, load_cached_embeddings
from semsearch_common.progress import make_progress

logger = logging.getLogger(__name__)


IndexBuilder = Callable[..., BuiltIndex]  # (vectors, spec, on_progress=...) -> BuiltIndex, as `build_index`
Checkpoint = Callable[[], None]  # called between micro-batches; raises to stop the work (deadline, client gone)


@dataclass
class Hit:
    """One search result. Not frozen on purpose: a frozen dataclass sets each field through `object.__setattr__`,
    which makes building k = 100 hits cost several times more (benchmarks/latency/)."""

    id: str
    score: float
    title: str
    snippet: str


@dataclass(frozen=True)
class Timings:
    """Stage durations of one request. `encode_ms` excludes tokenising where the encoder can split the two
    (`tokenize_ms` is 0 otherwise); `rescore_ms` is the exact re-ranking of candidates (an `,RFlat` index's, or
    from the vector file with `oversample`; 0 for others)."""

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
            "vector_file": meta.get("vector_file", {}).get("dtype", "none"),
            "embeddings_from_cache": meta["build"]["encode_from_cache"],
            "train_seconds": meta["build"]["train_seconds"],
            "total_seconds": meta["build"]["total_seconds"],
            "engine": meta.get("engine", {"name": "local"})["name"],
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
    embeddings: CorpusEmbeddings | None = None,
    builder: IndexBuilder | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Path] | None = None,
) -> BuildReport:
    """Encode the corpus (cached), build and train the index, and save it with its metadata.

    `encoder` encodes queries. Documents are encoded by `doc_encoder` when given (asymmetric mode: e.g. the
    teacher encodes the corpus once, a student trained into its space encodes queries), else by `encoder`.
    Another engine (`search.distributed`) passes the corpus vectors it computed (`embeddings`, under the same cache
    key), its `builder` (vectors, spec, progress -> BuiltIndex), what it adds to meta.json, and files that belong in
    the index directory beside index.faiss (`extra_files`: name -> path, e.g. on-disk inverted lists).
    """
    started = time.perf_counter()
    doc_encoder = doc_encoder or encoder
    if doc_encoder.dim != encoder.dim:
        raise ValueError(
            f"query encoder {encoder.name!r} ({encoder.dim} d) cannot search documents encoded by "
            f"{doc_encoder.name!r} ({doc_encoder.dim} d): an asymmetric pair must share one embedding space"
        )
    if embeddings is None:
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

        built = (builder or build_index)(embeddings.vectors, spec, on_progress=report)
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
        "skipped_records": dataset.skipped_records,  # bad records left out by `--on-bad-record skip` (0: none)
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
        **dict(extra_meta or {}),
    }
    docs = [DisplayDoc(doc.title, doc.text[:SNIPPET_CHARS], doc.metadata) for doc in dataset.corpus]
    doc_ids = [doc.id for doc in dataset.corpus]
    keep = spec.vectors != NO_VECTORS
    stored_meta = save_index_dir(
        out_dir,
        built.index,
        doc_ids,
        docs,
        meta,
        extra_files=extra_files,
        vectors=embeddings.vectors if keep else None,
        vector_dtype=spec.vectors if keep else DEFAULT_VECTOR_DTYPE,
    )
    return BuildReport(Path(out_dir), stored_meta)


class Pipeline:
    """Query encoder + index: `search(query, k)` returns hits and how long each stage took.

    `single_query_threads` caps FAISS's OpenMP team for one-query searches, in whichever thread searches (see
    `indexes.faiss_index.search_index`; None leaves the calling thread's default); `batch_search_threads` caps it
    for batches the same way (None: the calling thread's default team).
    """

    def __init__(
        self,
        encoder: Encoder,
        stored: StoredIndex,
        search_params: Mapping[str, float] | None = None,
        single_query_threads: int | None = SINGLE_QUERY_THREADS,
        batch_search_threads: int | None = None,
        writable: bool = False,
    ):
        check_encoder_matches(stored.meta, encoder.identity(), stored.path)
        for name, value in (
            ("single_query_threads", single_query_threads),
            ("batch_search_threads", batch_search_threads),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        self.encoder = encoder
        self._stored = stored
        self._view_lock = threading.Lock()
        # the index kept current with its store (`indexes.live`): writable when `enable_writes` opened it so, a
        # read-only replay when the directory was written to, else None until a filter needs one
        self.live: LiveIndex | None = None
        self.single_query_threads = single_query_threads
        self.batch_search_threads = batch_search_threads
        self.search_params = {**stored.meta.get("search_params", {}), **dict(search_params or {})}
        apply_search_params(stored.index, self.search_params)
        if writable or stored.docs.written:  # `writable`: open for writes now (see `enable_writes`)
            self.live = LiveIndex.open(stored, writable=writable)
        self._rescorer = Rescorer.of_refine(stored.index)  # an `,RFlat` index's own re-ranking, else None
        oversample = split_rescore_params(self.search_params)[1]
        if oversample is not None:  # rescoring from the vector file (refused for `,RFlat` or without the file)
            self._rescorer = self.rescorer_for(oversample)

    @property
    def stored(self) -> StoredIndex:
        """The index directory as loaded, or as its living index now holds it (a compaction swaps the index)."""
        return self.live.stored if self.live is not None else self._stored

    @stored.setter
    def stored(self, stored: StoredIndex) -> None:
        if self.live is not None:
            raise ValueError("a living index swaps its own stored index (compaction); it cannot be replaced")
        self._stored = stored

    def enable_writes(self) -> LiveIndex:
        """Open the directory for writes (see `indexes.live`): the index is re-read and the store replayed onto it.
        Raises NotWritableError for an index that cannot take writes."""
        if self.live is not None and self.live.writable:
            return self.live
        stored = load_index_dir(self.stored.path)
        apply_search_params(stored.index, self.search_params)
        live = LiveIndex.open(stored, writable=True)
        if self.live is not None:
            self.live.close()
        self.live = live
        return live

    def _view(self) -> LiveIndex:
        """The living index, or a read-only one over the loaded index (for metadata filters)."""
        with self._view_lock:
            if self.live is None:
                self.live = LiveIndex.open(self._stored, writable=False)
            return self.live

    @classmethod
    def load(
        cls,
        index_dir: Path | str,
        threads: int | None = None,
        search_params: Mapping[str, float] | None = None,
        batch_search_threads: int | None = None,
        mmap: bool = False,
        writable: bool = False,
    ) -> Pipeline:
        """Load an index directory and the encoder it was built with (`threads`: the encoder's intra-op threads;
        `mmap`: memory-map the index instead of reading it whole, so an index bigger than RAM can be served;
        `writable`: open it for writes, `indexes.live`)."""
        stored = load_index_dir(index_dir, mmap=mmap)
        if writable:
            check_writable(stored)  # before loading a model
        encoder = load_encoder_from_identity(stored.meta["encoder"], threads=threads, where=stored.path / META_FILE)
        return cls(encoder, stored, search_params, batch_search_threads=batch_search_threads, writable=writable)

    @property
    def meta(self) -> dict[str, Any]:
        return self.stored.meta

    @property
    def k_factor(self) -> float | None:
        """Candidates searched per hit before exact re-ranking (`,RFlat`'s k_factor, or `oversample` from the vector
        file); None for an index that re-ranks nothing."""
        return self._rescorer.factor if self._rescorer is not None else None

    @property
    def rescore_source(self) -> str | None:
        """Where re-ranking reads full-precision vectors: "refine" (RAM), "vector_file" (disk) or None."""
        return self._rescorer.source if self._rescorer is not None else None

    def rescorer_for(self, oversample: float | None = None) -> Rescorer | None:
        """The re-ranking a search with this `oversample` uses (None: the pipeline's own); raises ValueError when
        the index cannot rescore from a vector file (`,RFlat`, or no vector file kept) or oversample is below 1."""
        if oversample is None:
            return self._rescorer
        if not oversample >= 1:
            raise ValueError(f"oversample must be a number >= 1, got {oversample}")
        current = self._rescorer
        if current is not None and current.source == "vector_file" and current.factor == oversample:
            return current
        check_oversample(self.meta["factory"], self.stored.vectors is not None)
        assert self.stored.vectors is not None  # checked just above
        if self.live is not None:  # rows of positions added since the saved generation come from the store
            return Rescorer(self.stored.index, self.live.rows, oversample, "vector_file")
        return Rescorer.from_vectors(self.stored.index, self.stored.vectors, oversample)

    def rescore_candidates(self, k: int, oversample: float | None = None) -> int:
        """Candidates one query at `k` re-ranks exactly (as `Rescorer.search` takes them); 0 without re-ranking.
        Raises ValueError as `rescorer_for` does."""
        rescorer = self.rescorer_for(oversample)
        if rescorer is None:
            return 0
        return min(rescorer.candidates(min(k, self.stored.index.ntotal)), self.stored.index.ntotal)

    def count_tokens(self, queries: Sequence[str]) -> list[int]:
        """Tokens per query as the encoder sees it (truncated to its maximum length), without encoding."""
        return self.encoder.count_tokens(list(queries))

    def most_tokens(self, queries: int) -> int:
        """The most tokens `queries` queries can hold (each is cut to the encoder's maximum length): a bound that
        needs no tokenising."""
        return queries * self.encoder.max_seq_length

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

    def search_vectors_timed(
        self, vectors: np.ndarray, k: int, oversample: float | None = None, where: MetadataFilter | None = None
    ) -> TimedSearch:
        """`search_vectors` with candidate search and exact rescoring (`,RFlat`, or `oversample` from the vector
        file; None: the pipeline's own setting) timed apart; `where`: only documents whose metadata passes it.
        The caller of a living index holds its read lock (`reading`)."""
        if self.live is not None or where is not None:
            rescorer = self.rescorer_for(oversample)
            factor = rescorer.factor if rescorer is not None and rescorer.source == "vector_file" else None
            view = self._view()
            return view.search(vectors, k, factor, self.single_query_threads, where).timed
        k = min(k, self.stored.index.ntotal)
        rescorer = self.rescorer_for(oversample)
        batch_threads = self.batch_search_threads if len(vectors) > 1 else None  # one query: search_index caps it
        with openmp_threads(batch_threads):
            if rescorer is None:
                started = time.perf_counter()
                scores, positions = search_index(self.stored.index, vectors, k, self.single_query_threads)
                return TimedSearch(scores, positions, time.perf_counter() - started, 0.0)
            if k < 1:
                raise ValueError(f"k must be >= 1, got {k}")
            if vectors.ndim != 2 or vectors.shape[1] != self.stored.index.d:
                raise ValueError(f"queries must have shape (n, {self.stored.index.d}), got {vectors.shape}")
            return rescorer.search(vectors, k, self.single_query_threads)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold a living index still (its read lock) for a search and the reading of its hits; a no-op otherwise."""
        live = self.live
        if live is None:
            yield
            return
        with live.reading():
            yield

    def ids_of(self, positions: np.ndarray) -> list[list[str]]:
        return self.stored.docs.ids(positions)

    def hits(self, scores: np.ndarray, positions: np.ndarray) -> list[list[Hit]]:
        """Hits of each query's row, their documents read from the store in one lookup; Python numbers via
        `tolist` (numpy scalars cost more to index and convert). A living index read while another process writes
        may name a position deleted meanwhile: it is left out."""
        rows = positions.tolist()
        records = self.stored.docs.records([pos for row in rows for pos in row], missing_ok=self.live is not None)
        hits = []
        for row_scores, row in zip(scores.tolist(), rows, strict=True):
            found = [(score, records[pos]) for score, pos in zip(row_scores, row, strict=True) if pos in records]
            hits.append([Hit(doc.id, score, doc.title, doc.snippet) for score, doc in found])
        return hits

    def search(
        self, query: str, k: int = 10, oversample: float | None = None, where: MetadataFilter | None = None
    ) -> SearchResult:
        if not query.strip():
            raise ValueError("query must not be empty or whitespace-only")
        batch = self.search_batch([query], k, oversample=oversample, where=where)
        return SearchResult(batch.hits[0], batch.timings)

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        micro_batch: int | None = None,
        checkpoint: Checkpoint | None = None,
        oversample: float | None = None,
        where: MetadataFilter | None = None,
    ) -> BatchResult:
        """Encode the queries in batches of `micro_batch` (None: all at once), search each batch as it is encoded,
        and time each stage over the whole request. `checkpoint()` runs before each micro-batch and may raise to
        stop the work (a deadline passed, the client left). `oversample`: rescore k x oversample candidates from the
        vector file instead of the pipeline's own setting; `where`: a metadata filter (`indexes.filters`)."""
        return self.search_each(queries, [k] * len(queries), micro_batch, checkpoint, oversample, where)

    def search_each(
        self,
        queries: Sequence[str],
        ks: Sequence[int],
        micro_batch: int | None = None,
        checkpoint: Checkpoint | None = None,
        oversample: float | None = None,
        where: MetadataFilter | None = None,
    ) -> BatchResult:
        """`search_batch` with a k per query: queries are encoded together and searched once per distinct k, so
        every query gets exactly the hits `search(query, k)` gives it (candidate lists of HNSW and `,RFlat` indexes
        depend on k, so a search at the largest k cut down could differ)."""
        self.rescorer_for(oversample)  # refuse an oversample this index cannot take before any encoding
        if not queries:
            raise ValueError("no queries: give at least one")
        if len(ks) != len(queries):
            raise ValueError(f"need one k per query: {len(queries)} queries, {len(ks)} k values")
        blank = [i for i, query in enumerate(queries) if not query.strip()]
        if blank:
            raise ValueError(f"query must not be empty or whitespace-only: queries[{', '.join(map(str, blank))}]")
        if min(ks) < 1:
            raise ValueError(f"k must be >= 1, got {min(ks)}")
        if micro_batch is not None and micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1 or None, got {micro_batch}")
        step = micro_batch or len(queries)
        started = time.perf_counter()
        hits: list[list[Hit]] = []
        encode_seconds = tokenize_seconds = search_seconds = rescore_seconds = 0.0
        for start in range(0, len(queries), step):
            if checkpoint is not None:
                checkpoint()
            chunk, chunk_ks = queries[start : start + step], ks[start : start + step]
            before = time.perf_counter()
            vectors, tokenized = self.encode_queries_timed(chunk)
            encode_seconds += time.perf_counter() - before - tokenized
            tokenize_seconds += tokenized
            chunk_hits: list[list[Hit]] = [[] for _ in chunk]
            with self.reading():
                for k in sorted(set(chunk_ks)):
                    rows = [i for i, row_k in enumerate(chunk_ks) if row_k == k]
                    chunk_vectors = vectors[rows] if len(rows) < len(chunk) else vectors
                    found = self.search_vectors_timed(chunk_vectors, k, oversample, where)
                    search_seconds += found.search_seconds
                    rescore_seconds += found.rescore_seconds
                    for row, row_hits in zip(rows, self.hits(found.scores, found.positions), strict=True):
                        chunk_hits[row] = row_hits
            hits.extend(chunk_hits)
        timings = Timings(
            encode_ms=encode_seconds * 1e3,
            search_ms=search_seconds * 1e3,
            total_ms=(time.perf_counter() - started) * 1e3,
            tokenize_ms=tokenize_seconds * 1e3,
            rescore_ms=rescore_seconds * 1e3,
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
            "rescore": self.rescore_source,
            "vector_file": meta.get("vector_file"),
            "single_query_threads": self.single_query_threads,
            "batch_search_threads": self.batch_search_threads,
            "ntotal": len(self.stored.docs) if self.live is not None else meta["ntotal"],  # live documents
            "dim": meta["dim"],
            "bytes_per_vector": meta["bytes_per_vector"],
            "model_bytes": meta["model_bytes"],
            "dataset": meta["dataset"],
            "build": meta["build"],
            "engine": meta.get("engine", {"name": "local"}),
        }


def result_as_dict(result: SearchResult) -> dict[str, Any]:
    return {"hits": [asdict(h) for h in result.hits], "timings": asdict(result.timings)}
