"""Where a query's milliseconds go between the ONNX encode and the final hits, under the thread settings that decide it.

One query at a time (batch 1) through `Pipeline.search`, every stage timed: tokenize, encode, search, hits (result
building), total; then the server's response (its models and JSON, `respond`) and the caller's wall time. The
configurations are the settings that decide where the time goes:

- onnxruntime intra-op spinning on / off (`OnnxEncoder(spinning=...)`): one child process per setting, so one
  setting's spinning threads never land in the other's timings;
- FAISS's OpenMP team for a single query: the calling thread's default, or capped at 1 (`single_query_threads`);
- one pipeline, or four alternating (four ONNX sessions and four indexes in one process, like a server);
- called from one thread, or round-robin from a pool of threads (as concurrent requests reach FastAPI's workers,
  each thread with its own OpenMP settings and team).

Configurations are interleaved in short blocks (each block starts with one untimed call, which absorbs whatever the
previous configuration left spinning) and the spinning processes take turns block by block, so load on a shared
machine drifts into every configuration alike; the load average is recorded beside each block. Large batches are
measured too, so a setting that helps single queries is seen not to slow corpus encoding or batch search.

The index holds seeded random unit vectors (Flat and SQ8 search cost does not depend on the data) or given vectors;
queries are corpus sentences, never a split's queries. An index wider than the encoder is searched with the
encoder's vector repeated to its width (`TiledEncoder`).

Run from the repository root, against the installed package:
`PYTHONPATH=benchmarks/latency python -m latency_study --model-dir DIR --out DIR`.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import logging
import multiprocessing as mp
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from compression.encoders import Encoder
from compression.encoders.base import TextKind
from compression.encoders.onnx import OnnxEncoder
from indexes.docstore import DOCS_DB, DisplayDoc, DocStore, write_doc_store
from indexes.faiss_index import IndexSpec, build_index, import_faiss, openmp_threads, search_index
from indexes.store import StoredIndex
from search.data.datasets import load_dataset
from search.data.records import Dataset
from search.pipeline import SNIPPET_CHARS, Pipeline, SearchResult
from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.machine import machine_info
from semsearch_common.tables import markdown_table
from semsearch_common.timing import percentile_ms

logger = logging.getLogger(__name__)

Caller = Literal["main", "pool"]
CALLERS: tuple[Caller, ...] = ("main", "pool")
STAGES = ("tokenize", "encode", "search", "hits", "total", "encoder", "after_encode", "respond", "wall")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS, MAX_WORDS = 5, 30  # query-like sentences: SciFact claims are 5-30 words
SWITCH_PAUSE_S = 0.05  # between the two processes' turns, so the idle one's threads have gone to sleep
T = TypeVar("T")


@dataclass(frozen=True)
class LatencySpec:
    """What to measure. `dim` None: the encoder's width; a multiple of it: queries tiled to that width. `docs` None:
    the whole corpus. `vectors`: an .npy of corpus vectors (rows = documents) instead of random unit vectors.
    `single_query_threads` entries: None for FAISS's default team, else the cap. `onnx_threads`: intra-op threads
    (None: onnxruntime's default, one per physical core)."""

    model_dir: Path
    dataset: str = "scifact"
    factories: tuple[str, ...] = ("Flat", "SQ8")
    dim: int | None = None
    docs: int | None = None
    vectors: Path | None = None
    queries: int = 300
    k: int = 100
    spinning: tuple[bool, ...] = (True, False)
    single_query_threads: tuple[int | None, ...] = (None, 1)
    pipelines: tuple[int, ...] = (1, 4)
    callers: tuple[Caller, ...] = CALLERS
    pool_threads: int = 40
    onnx_threads: int | None = None
    block: int = 10
    batch_texts: int = 512
    batch_queries: int = 1000
    batch_repeats: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("queries", "k", "pool_threads", "block", "batch_repeats")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("batch_texts", "batch_queries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 skips it), got {getattr(self, name)}")
        if not self.factories:
            raise ValueError("give at least one index factory (e.g. Flat, SQ8)")
        bad_callers = [caller for caller in self.callers if caller not in CALLERS]
        if bad_callers or not self.callers:
            raise ValueError(f"unknown callers {bad_callers or '(none)'}: use {', '.join(CALLERS)}")
        if not self.spinning or len(set(self.spinning)) != len(self.spinning):
            raise ValueError(f"spinning must list true and/or false once each, got {self.spinning}")
        if any(p < 1 for p in self.pipelines) or not self.pipelines:
            raise ValueError(f"pipelines must be counts >= 1, got {self.pipelines}")
        if any(t is not None and t < 1 for t in self.single_query_threads) or not self.single_query_threads:
            raise ValueError(f"single_query_threads entries must be >= 1 or None, got {self.single_query_threads}")
        for name in ("dim", "docs", "onnx_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")


@dataclass(frozen=True)
class Config:
    """One timed configuration (the spinning setting is its process's)."""

    spinning: bool
    factory: str
    single_query_threads: int | None
    pipelines: int
    caller: Caller

    def label(self) -> str:
        faiss_threads = "default" if self.single_query_threads is None else str(self.single_query_threads)
        return (
            f"spin={'on' if self.spinning else 'off'} {self.factory} faiss={faiss_threads} "
            f"pipelines={self.pipelines} caller={self.caller}"
        )


class TiledEncoder:
    """An encoder's unit vectors repeated `times` and rescaled to unit length: the search cost of a `dim * times`
    index at this encoder's encode cost (the copy takes microseconds)."""

    def __init__(self, encoder: OnnxEncoder, times: int) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        self.encoder, self.times = encoder, times
        self.name = f"{encoder.name}x{times}"
        self.dim = encoder.dim * times

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        return self.encode_timed(texts, kind, batch_size)[0]

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        vectors, tokenize_seconds = self.encoder.encode_timed(texts, kind=kind, batch_size=batch_size)
        return np.tile(vectors, (1, self.times)) / np.float32(np.sqrt(self.times)), tokenize_seconds

    def identity(self) -> dict[str, Any]:
        return {**self.encoder.identity(), "name": self.name, "dim": self.dim}

    def model_bytes(self) -> int:
        return self.encoder.model_bytes()


class ThreadRing:
    """`size` long-lived threads; call i runs on thread i % size, so consecutive calls come from different threads,
    as concurrent requests reach different workers of a server's thread pool."""

    def __init__(self, size: int) -> None:
        self._queues: list[queue.Queue] = [queue.Queue() for _ in range(size)]
        self._threads = [threading.Thread(target=self._work, args=(q,), daemon=True) for q in self._queues]
        self._next = itertools.count()
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _work(jobs: queue.Queue) -> None:
        while (job := jobs.get()) is not None:
            call, future = job
            try:
                future.set_result(call())
            except BaseException as err:  # handed back to the caller
                future.set_exception(err)

    def run(self, call: Callable[[], T]) -> T:
        future: Future = Future()
        self._queues[next(self._next) % len(self._queues)].put((call, future))
        return future.result()

    def close(self) -> None:
        for jobs in self._queues:
            jobs.put(None)
        for thread in self._threads:
            thread.join()


def corpus_sentences(dataset: Dataset, n: int, seed: int) -> list[str]:
    """`n` seeded corpus sentences of MIN_WORDS..MAX_WORDS words: query-like text that is no split's query."""
    sentences = [
        sentence.strip()
        for doc in dataset.corpus
        for sentence in SENTENCE_END.split(doc.text)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS
    ]
    if len(sentences) < n:
        raise ValueError(f"{dataset.name} has {len(sentences)} query-like sentences, fewer than the {n} asked for")
    rng = np.random.default_rng(seed)
    return [sentences[i] for i in rng.choice(len(sentences), size=n, replace=False)]


def corpus_vectors(spec: LatencySpec, n: int, dim: int) -> np.ndarray:
    """The index's vectors: `spec.vectors` (its first n rows) or seeded random unit vectors."""
    if spec.vectors is not None:
        vectors = np.load(spec.vectors, mmap_mode="r")
        if vectors.ndim != 2 or vectors.shape[1] != dim or len(vectors) < n:
            raise ValueError(f"{spec.vectors}: need at least {n} rows of {dim} dimensions, got shape {vectors.shape}")
        return np.ascontiguousarray(vectors[:n], dtype=np.float32)
    return random_unit_vectors(n, dim, spec.seed)


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def response_json(result: SearchResult) -> str:
    """The body `POST /search` answers with: the route's response model, built and serialised as the route does."""
    from search.serve.schemas import search_response

    return search_response("bench", result).model_dump_json(by_alias=True)


def timed_query(pipeline: Pipeline, query: str, k: int) -> dict[str, float]:
    """One query's stage times in ms: the pipeline's own, result building (the rest of its total) and the response."""
    result = pipeline.search(query, k)
    started = time.perf_counter()
    response_json(result)
    respond_ms = (time.perf_counter() - started) * 1e3
    t = result.timings
    searched = t.search_ms + t.rescore_ms
    return {
        "tokenize": t.tokenize_ms,
        "encode": t.encode_ms,
        "search": searched,
        "hits": t.total_ms - t.tokenize_ms - t.encode_ms - searched,
        "total": t.total_ms,
        "encoder": t.tokenize_ms + t.encode_ms,
        "after_encode": t.total_ms - t.tokenize_ms - t.encode_ms,
        "respond": respond_ms,
    }


# --- the child process: one spinning setting ------------------------------------------------------------------


class Bench:
    """One spinning setting's pipelines, thread ring and texts, answering the parent's `block` and `batch` calls."""

    def __init__(self, spec: LatencySpec, spinning: bool) -> None:
        self.spec, self.spinning = spec, spinning
        dataset = load_dataset(spec.dataset, download=False)
        n_docs = spec.docs or len(dataset.corpus)
        if n_docs > len(dataset.corpus):
            raise ValueError(f"docs={n_docs} but {dataset.name} has {len(dataset.corpus)} documents")
        corpus = dataset.corpus[:n_docs]
        self.queries = corpus_sentences(dataset, spec.queries, spec.seed)
        self.batch_texts = [doc.full_text() for doc in corpus[: spec.batch_texts]]
        slots = max(spec.pipelines)
        self.encoders = [
            OnnxEncoder(spec.model_dir, threads=spec.onnx_threads, spinning=spinning, name=f"s{slot}")
            for slot in range(slots)
        ]
        width = self.encoders[0].dim
        dim = spec.dim or width
        if dim % width:
            raise ValueError(f"dim {dim} must be a multiple of the encoder's {width}")
        query_encoders: list[Encoder] = [
            encoder if dim == width else TiledEncoder(encoder, dim // width) for encoder in self.encoders
        ]
        vectors = corpus_vectors(spec, n_docs, dim)
        store_dir = tempfile.mkdtemp(prefix="latency-study-")  # the document store a pipeline reads, removed with us
        weakref.finalize(self, shutil.rmtree, store_dir, True)
        store_path = Path(store_dir) / DOCS_DB
        write_doc_store(store_path, [doc.id for doc in corpus],
                        [DisplayDoc(doc.title, doc.text[:SNIPPET_CHARS]) for doc in corpus])  # fmt: skip
        docs = DocStore.open(store_path)
        self.dim, self.n_docs = dim, n_docs
        self.batch_vectors = random_unit_vectors(spec.batch_queries, dim, spec.seed + 1)
        faiss = import_faiss()
        self.indexes = {}
        self.pipelines: dict[tuple[str, int | None], list[Pipeline]] = {}
        for factory in spec.factories:
            built = build_index(vectors, IndexSpec(factory, seed=spec.seed)).index
            self.indexes[factory] = built
            per_slot = [built if slot == 0 else faiss.clone_index(built) for slot in range(slots)]
            for threads in spec.single_query_threads:
                self.pipelines[(factory, threads)] = [
                    Pipeline(
                        query_encoders[slot],
                        StoredIndex(per_slot[slot], docs, {"encoder": query_encoders[slot].identity()}, Path()),
                        single_query_threads=threads,
                    )
                    for slot in range(slots)
                ]
        self.configs = [
            Config(spinning, factory, threads, count, caller)
            for factory in spec.factories
            for threads in spec.single_query_threads
            for count in spec.pipelines
            for caller in spec.callers
        ]
        self.ring = ThreadRing(spec.pool_threads)

    def call(self, caller: Caller, work: Callable[[], T]) -> T:
        return work() if caller == "main" else self.ring.run(work)

    def run_block(self, block: int) -> list[dict[str, Any]]:
        """Time this block's queries under every configuration, in an order shuffled per block."""
        spec = self.spec
        indices = range(block * spec.block, min((block + 1) * spec.block, spec.queries))
        order = np.random.default_rng([spec.seed, block, int(self.spinning)]).permutation(len(self.configs))
        records = []
        for config in (self.configs[i] for i in order):
            pipelines = self.pipelines[(config.factory, config.single_query_threads)][: config.pipelines]
            load = os.getloadavg()[0]
            warm, first = pipelines[indices[0] % len(pipelines)], self.queries[indices[0]]
            self.call(config.caller, lambda p=warm, q=first: p.search(q, spec.k))  # untimed: absorbs the switch
            for i in indices:
                pipeline = pipelines[i % len(pipelines)]
                started = time.perf_counter()
                stages = self.call(config.caller, lambda p=pipeline, q=self.queries[i]: timed_query(p, q, spec.k))
                stages["wall"] = (time.perf_counter() - started) * 1e3
                records.append({"config": asdict(config), "query": i, "load": load, **stages})
        return records

    def run_batch(self) -> dict[str, Any]:
        """A corpus-style batch encode (batch size 32) and a batch search with FAISS's default team and with 1."""
        out: dict[str, Any] = {"spinning": self.spinning, "load": os.getloadavg()[0]}
        if self.batch_texts:
            started = time.perf_counter()
            self.encoders[0].encode(self.batch_texts, kind="passage", batch_size=32)
            out["encode_s"] = time.perf_counter() - started
        if len(self.batch_vectors):
            for factory, index in self.indexes.items():
                for label, threads in (("default", None), ("1", 1)):
                    with openmp_threads(threads):
                        started = time.perf_counter()
                        search_index(index, self.batch_vectors, self.spec.k)
                        out[f"search_{factory}_faiss-{label}_s"] = time.perf_counter() - started
        return out

    def describe(self) -> dict[str, Any]:
        encoder = self.encoders[0]
        return {
            "spinning": self.spinning,
            "allow_spinning_read_back": encoder.session_setting("session.intra_op.allow_spinning"),
            "encoder": encoder.identity(),
            "sessions": len(self.encoders),
            "dim": self.dim,
            "docs": self.n_docs,
            "faiss_default_threads": import_faiss().omp_get_max_threads(),
            "example_queries": self.queries[:5],
        }


def serve_child(conn: Any, spec: LatencySpec, spinning: bool) -> None:
    """Child process main: build a `Bench`, then answer ("block", i), ("batch", None) and ("stop", None)."""
    logging.basicConfig(level=logging.WARNING)
    try:
        bench = Bench(spec, spinning)
        conn.send(("ready", bench.describe()))
        while True:
            command, argument = conn.recv()
            if command == "stop":
                break
            conn.send(("ok", bench.run_block(argument) if command == "block" else bench.run_batch()))
        bench.ring.close()
    except Exception as err:  # the parent re-raises it with the child's message
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


class Child:
    """A spinning setting's child process and the parent's end of its pipe."""

    def __init__(self, spec: LatencySpec, spinning: bool) -> None:
        context = mp.get_context("spawn")  # a fresh process: no onnxruntime or OpenMP state forked from the parent
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=serve_child, args=(child_conn, spec, spinning), daemon=True)
        self.process.start()
        child_conn.close()
        self.info = self.receive()

    def receive(self) -> Any:
        status, payload = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"latency bench child failed: {payload}")
        return payload

    def ask(self, command: str, argument: Any = None) -> Any:
        self.conn.send((command, argument))
        return self.receive()

    def stop(self) -> None:
        try:
            self.conn.send(("stop", None))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)


# --- the parent: taking turns, then summarising ---------------------------------------------------------------


def run_latency_bench(spec: LatencySpec, out_dir: Path | None = None, write_records: bool = False) -> dict[str, Any]:
    """Run every configuration (processes taking turns block by block), summarise, and write results if `out_dir`
    (with every query's stage times as records.csv if `write_records`)."""
    import_faiss()  # loaded before machine_info, so its OpenMP pool is listed
    started = time.perf_counter()
    load_start = os.getloadavg()
    children = [Child(spec, spinning) for spinning in spec.spinning]
    records: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    try:
        blocks = -(-spec.queries // spec.block)
        for block in range(blocks):
            for child in children[:: 1 if block % 2 == 0 else -1]:  # alternate who goes first
                records += child.ask("block", block)
                time.sleep(SWITCH_PAUSE_S)
            logger.info("block %d/%d done, load %.2f", block + 1, blocks, os.getloadavg()[0])
        if spec.batch_texts or spec.batch_queries:
            for _ in range(spec.batch_repeats):
                for child in children:
                    batches.append(child.ask("batch"))
                    time.sleep(SWITCH_PAUSE_S)
    finally:
        for child in children:
            child.stop()
    result = {
        "spec": {**asdict(spec), "model_dir": str(spec.model_dir), "vectors": spec.vectors and str(spec.vectors)},
        "machine": {
            **machine_info(spec.onnx_threads),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "processes": [child.info for child in children],
        "configs": summarise(records),
        "batch": summarise_batches(batches),
        "seconds": time.perf_counter() - started,
        "records": records,
    }
    if out_dir is not None:
        write_results(result, Path(out_dir), write_records)
    return result


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50/p95 of every stage per configuration, the load it ran under, and total p50 minus encoder p50."""
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(tuple(record["config"].values()), []).append(record)
    rows = []
    for group in grouped.values():
        row: dict[str, Any] = {**group[0]["config"], "label": Config(**group[0]["config"]).label(), "n": len(group)}
        for stage in STAGES:
            seconds = np.array([r[stage] for r in group]) / 1e3
            row[f"{stage}_ms_p50"] = percentile_ms(seconds, 50)
            row[f"{stage}_ms_p95"] = percentile_ms(seconds, 95)
        row["total_minus_encoder_ms_p50"] = row["total_ms_p50"] - row["encoder_ms_p50"]
        row["load_mean"] = float(np.mean([r["load"] for r in group]))
        rows.append(row)
    return sorted(
        rows,
        key=lambda r: (r["factory"], r["pipelines"], r["caller"], not r["spinning"], r["single_query_threads"] or 0),
    )


def summarise_batches(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fastest of the repeats of each batch figure, per spinning setting."""
    rows = []
    for spinning in dict.fromkeys(b["spinning"] for b in batches):
        mine = [b for b in batches if b["spinning"] == spinning]
        keys = [key for key in mine[0] if key.endswith("_s")]
        rows.append(
            {
                "spinning": spinning,
                **{key: min(b[key] for b in mine) for key in keys},
                "load_mean": float(np.mean([b["load"] for b in mine])),
            }
        )
    return rows


def before_after(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per index, pipeline count and caller: the old defaults (spinning on, FAISS's default team) against the new
    ones (spinning off, one FAISS thread per single query), where both were measured."""
    by_key = {(r["factory"], r["pipelines"], r["caller"], r["spinning"], r["single_query_threads"]): r for r in configs}
    rows = []
    for (factory, pipelines, caller, spinning, threads), old in by_key.items():
        new = by_key.get((factory, pipelines, caller, False, 1))
        if spinning and threads is None and new is not None:
            rows.append(
                {
                    "factory": factory,
                    "pipelines": pipelines,
                    "caller": caller,
                    **{
                        f"{when}_{key}": row[key]
                        for when, row in (("old", old), ("new", new))
                        for key in ("total_ms_p50", "total_ms_p95", "after_encode_ms_p50", "search_ms_p50")
                    },
                }
            )
    return rows


def results_markdown(result: dict[str, Any]) -> str:
    """The configurations table (ms), the batch table (s) and the machine's load."""
    headers = ["spin", "index", "faiss 1-query threads", "pipelines", "caller", "tokenize", "encode", "search",
               "hits", "total p50", "total p95", "total - encoder p50", "after encode p50", "respond",
               "load"]  # fmt: skip
    rows = [
        [
            "on" if r["spinning"] else "off",
            r["factory"],
            "default" if r["single_query_threads"] is None else str(r["single_query_threads"]),
            r["pipelines"],
            r["caller"],
            *(f"{r[key]:.3f}" for key in ("tokenize_ms_p50", "encode_ms_p50", "search_ms_p50", "hits_ms_p50")),
            f"{r['total_ms_p50']:.2f}",
            f"{r['total_ms_p95']:.2f}",
            f"{r['total_minus_encoder_ms_p50']:.3f}",
            f"{r['after_encode_ms_p50']:.3f}",
            f"{r['respond_ms_p50']:.3f}",
            f"{r['load_mean']:.2f}",
        ]
        for r in result["configs"]
    ]
    machine = result["machine"]
    lines = [
        "Per query, batch 1, k = {k}, p50 in ms unless marked ({n} queries per row; `hits` = result building; "
        "`total - encoder` = total p50 minus (tokenize + encode) p50, `after encode` = p50 of each query's total "
        "minus its own tokenize + encode; `respond` = the server's response models + JSON, outside `total`).".format(
            k=result["spec"]["k"], n=result["spec"]["queries"]
        ),
        "",
        markdown_table(headers, rows),
    ]
    changes = before_after(result["configs"])
    if changes:
        change_rows = [
            [c["factory"], c["pipelines"], c["caller"],
             *(f"{c[f'old_{key}']:.2f} -> {c[f'new_{key}']:.2f}"
               for key in ("total_ms_p50", "total_ms_p95", "search_ms_p50", "after_encode_ms_p50"))]
            for c in changes
        ]  # fmt: skip
        headers = ["index", "pipelines", "caller", "total p50", "total p95", "search p50", "after encode p50"]
        title = "Old defaults (spinning on, FAISS default team) -> new (spinning off, 1 thread per single query), ms:"
        lines += [title, "", markdown_table(headers, change_rows)]
    if result["batch"]:
        keys = [key for key in result["batch"][0] if key.endswith("_s")]
        batch_rows = [["on" if b["spinning"] else "off", *(f"{b[key]:.3f}" for key in keys), f"{b['load_mean']:.2f}"]
                      for b in result["batch"]]  # fmt: skip
        lines += ["Batches (seconds, fastest of the repeats):", "", markdown_table(["spin", *keys, "load"], batch_rows)]
    lines.append(
        f"Machine: {machine['cpu']}, {machine['cores']} logical cores; load average {machine['loadavg_start'][0]:.2f} "
        f"at the start, {machine['loadavg_end'][0]:.2f} at the end."
    )
    return "\n".join(lines) + "\n"


def records_csv(records: list[dict[str, Any]]) -> str:
    """One row per timed query: its configuration, the load average, and every stage in ms (4 decimals)."""
    buffer = io.StringIO()
    fields = [*Config.__dataclass_fields__, "query", "load", *STAGES]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        stages = {stage: round(record[stage], 4) for stage in STAGES}
        writer.writerow({**record["config"], "query": record["query"], "load": record["load"], **stages})
    return buffer.getvalue()


def write_results(result: dict[str, Any], out_dir: Path, write_records: bool = False) -> None:
    """results.json (all but the per-query records), results.md, and records.csv when asked (~1 MB a run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", {key: value for key, value in result.items() if key != "records"})
    if write_records:
        write_text_atomic(out_dir / "records.csv", records_csv(result["records"]))
    write_text_atomic(out_dir / "results.md", results_markdown(result))


# --- command line -----------------------------------------------------------------------------------------------


def parse_threads(text: str) -> tuple[int | None, ...]:
    """`default,1` -> (None, 1)."""
    return tuple(None if item == "default" else int(item) for item in text.split(","))


def parse_flags(text: str) -> tuple[bool, ...]:
    """`on,off` -> (True, False)."""
    allowed = {"on": True, "off": False}
    items = text.split(",")
    if any(item not in allowed for item in items):
        raise ValueError(f"bad --spinning {text!r}: use on and/or off, comma-separated")
    return tuple(allowed[item] for item in items)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latency_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="ONNX model folder (e.g. the int8 MiniLM)")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and results.md")
    parser.add_argument("--records", action="store_true", help="also write every query's stage times (records.csv)")
    parser.add_argument("--dataset", default="scifact", help="dataset whose corpus gives documents and sentences")
    parser.add_argument("--factories", default="Flat;SQ8", help="semicolon-separated index factories")
    parser.add_argument("--dim", type=int, default=None, help="index width (a multiple of the encoder's)")
    parser.add_argument("--docs", type=int, default=None, help="documents (default: the whole corpus)")
    parser.add_argument("--vectors", type=Path, default=None, help=".npy corpus vectors instead of random ones")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--spinning", default="on,off", help="onnxruntime spinning settings: on,off")
    parser.add_argument("--faiss-threads", default="default,1", help="single-query FAISS threads: default,1")
    parser.add_argument("--pipelines", default="1,4", help="pipelines alternating in one process")
    parser.add_argument("--callers", default="main,pool", help="main (one thread) and/or pool (thread ring)")
    parser.add_argument("--pool-threads", type=int, default=40, help="threads in the ring (FastAPI's pool: 40)")
    parser.add_argument("--onnx-threads", type=int, default=None, help="intra-op threads (default: ORT's)")
    parser.add_argument("--block", type=int, default=10, help="queries per configuration turn")
    parser.add_argument("--batch-texts", type=int, default=512, help="texts in the batch encode (0: skip)")
    parser.add_argument("--batch-queries", type=int, default=1000, help="queries in the batch search (0: skip)")
    parser.add_argument("--batch-repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = LatencySpec(
            model_dir=args.model_dir,
            dataset=args.dataset,
            factories=tuple(f.strip() for f in args.factories.split(";") if f.strip()),
            dim=args.dim,
            docs=args.docs,
            vectors=args.vectors,
            queries=args.queries,
            k=args.k,
            spinning=parse_flags(args.spinning),
            single_query_threads=parse_threads(args.faiss_threads),
            pipelines=tuple(int(p) for p in args.pipelines.split(",")),
            callers=tuple(args.callers.split(",")),  # type: ignore[arg-type]  (validated by LatencySpec)
            pool_threads=args.pool_threads,
            onnx_threads=args.onnx_threads,
            block=args.block,
            batch_texts=args.batch_texts,
            batch_queries=args.batch_queries,
            batch_repeats=args.batch_repeats,
            seed=args.seed,
        )
    except ValueError as err:
        parser.error(str(err))
    result = run_latency_bench(spec, args.out, write_records=args.records)
    print(results_markdown(result))


if __name__ == "__main__":
    main()
