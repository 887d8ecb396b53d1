"""`semsearch bench`: recall versus latency for every (encoder, index, search parameters) configuration.

For each encoder the corpus is encoded once (cached by `encode_corpus`) and the queries once, one at a time, timing
the encoder at batch 1. Each index is built once per encoder, then its search-time parameters are swept
ann-benchmarks style: every query is searched alone, `repeats` times, keeping each query's fastest time. The
teacher's exact top-10 is the ground truth of `recall@10_vs_teacher`; each encoder's own exact top-10 that of
`recall@10_vs_exact`. Latencies are per query: total = encode + search, p50/p95 over the queries.

Encoder entries are `label=spec[@docspec][^fp32label]`: `@docspec` encodes documents with another model (asymmetric
mode; a bare `@` means the `--doc-encoder` default), `^fp32label` names the fp32 counterpart of an int8 entry for the
"where the recall goes" split (otherwise `X-int8` pairs with `X`).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_json_atomic, write_text_atomic
from common.progress import make_progress
from compression.encoders import Encoder, load_encoder
from indexes.exact import exact_search
from indexes.faiss_index import (
    DEFAULT_TRAIN_SAMPLE,
    SEARCH_PARAMS,
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    default_search_params,
    validate_factory,
)
from search.bench.compression import machine_info
from search.bench.pareto import pareto_mask
from search.data.datasets import Dataset, load_dataset
from search.embeddings import encode_corpus
from search.evaluation.metrics import knn_recall, ndcg_at_k, percentile_ms, recall_at_k

logger = logging.getLogger(__name__)

TOP_K = 10  # the timed search: top-10, as a search engine page (and ann-benchmarks) asks for
RECALL_K = 100  # an untimed second pass for recall@100
BATCH = 64  # batch size of the throughput (QPS) measurement
WARMUP_QUERIES = 3
VERSION_PACKAGES = ("faiss-cpu", "onnxruntime", "torch", "sentence-transformers", "numpy", "matplotlib")
ROW_KEYS = (
    "encoder", "encoder_spec", "doc_encoder", "precision", "index", "params", "default_params",
    "recall@10_vs_teacher", "recall@10_vs_exact", "ndcg@10", "recall@100",
    "encode_ms_p50", "encode_ms_p95", "search_ms_p50", "search_ms_p95", "total_ms_p50", "total_ms_p95",
    "qps_batch64", "bytes_per_vector", "model_bytes", "build_s", "train_s", "dim", "queries", "pareto",
)  # fmt: skip
LOSS_DEFINITIONS = {
    "student_vs_teacher": "1 - recall@10_vs_teacher of the fp32 counterpart's exact (Flat) search: what the smaller "
    "encoder loses before any quantization or index",
    "int8_vs_fp32": "recall@10_vs_teacher of the fp32 counterpart's exact search minus that of this int8 encoder's "
    "exact search (negative: int8 happened to agree more); top10_overlap_with_fp32 is the mean overlap of the two "
    "exact top-10 lists",
    "ann_vs_exact": "1 - recall@10_vs_exact of each index at its default search parameters: what the approximate "
    "index (IVF probing, HNSW, PQ/SQ codes) loses against exact search over the same vectors",
}


# ---------------------------------------------------------------------------------------------------- the spec


class IndexBuildError(ValueError):
    """An index could not be trained on this corpus (too few vectors for its lists or codebooks)."""


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder to benchmark: a label, the query-encoder spec, an optional document-encoder spec
    (asymmetric mode) and an optional fp32 counterpart label (for the int8 part of the loss split)."""

    label: str
    spec: str
    doc_spec: str | None = None
    fp32_of: str | None = None


@dataclass(frozen=True)
class BenchSpec:
    """What `run_bench` measures and how; build it from strings with `make_bench_spec`."""

    encoders: tuple[EncoderEntry, ...]
    indexes: tuple[str, ...] = ("Flat",)
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    dataset: str = "scifact"
    split: str = "test"
    teacher: str = "teacher"
    threads: int = 2
    repeats: int = 3
    max_queries: int | None = None
    budget_ms: float | None = None
    budget_bytes: float | None = None
    train_sample: int = DEFAULT_TRAIN_SAMPLE
    seed: int = 0
    show_progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not self.encoders:
            raise ValueError("no encoders to benchmark: give at least one, e.g. --encoders teacher")
        if not self.indexes:
            raise ValueError("no indexes to benchmark: give at least one, e.g. --indexes Flat")
        for name, value in (("threads", self.threads), ("repeats", self.repeats), ("max_queries", self.max_queries)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("budget_ms", self.budget_ms), ("budget_bytes", self.budget_bytes)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        labels = [entry.label for entry in self.encoders]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate encoder labels {duplicates}: give each entry its own label=spec")
        for entry in self.encoders:
            if entry.fp32_of is not None and entry.fp32_of not in labels:
                raise ValueError(
                    f"encoder {entry.label!r} names fp32 counterpart {entry.fp32_of!r}, which is not an entry; "
                    f"labels: {', '.join(labels)}"
                )

    def sweep_dict(self) -> dict[str, tuple[float, ...]]:
        return dict(self.sweep)


_LABEL = re.compile(r"^[\w.+:-]+$")


def parse_encoders(text: str, default_doc_spec: str = "teacher") -> tuple[EncoderEntry, ...]:
    """Parse `label=spec[@docspec][^fp32label],...`; a bare `spec` is its own label, a bare `@` means
    `default_doc_spec`."""
    entries = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, sep, rest = item.partition("=")
        if not sep:
            label, rest = "", item
        spec, *suffixes = re.split(r"(?=[@^])", rest)
        doc_spec = fp32_of = None
        for suffix in suffixes:
            marker, value = suffix[0], suffix[1:].strip()
            if marker == "@":
                if doc_spec is not None:
                    raise ValueError(f"encoder entry {item!r} has two @docspec parts; give one")
                doc_spec = value or default_doc_spec
            else:
                if fp32_of is not None or not value:
                    raise ValueError(f"encoder entry {item!r}: write one ^fp32label naming another entry's label")
                fp32_of = value
        spec, label = spec.strip(), label.strip() or spec.strip()
        if not spec:
            raise ValueError(f"encoder entry {item!r} has no spec: use label=spec[@docspec][^fp32label]")
        if not _LABEL.match(label):
            raise ValueError(f"encoder label {label!r} may hold only letters, digits and . + : - _")
        entries.append(EncoderEntry(label, spec, None if doc_spec == spec else doc_spec, fp32_of))
    if not entries:
        raise ValueError("no encoders given: use label=spec[@docspec][^fp32label],... e.g. teacher,student=DIR")
    return tuple(entries)


def doc_encoder_name(entry: EncoderEntry, entries: Sequence[EncoderEntry]) -> str:
    """What encodes `entry`'s documents: its own label, the label of a symmetric entry with that spec, or the spec."""
    if entry.doc_spec is None:
        return entry.label
    return next((e.label for e in entries if e.spec == entry.doc_spec and e.doc_spec is None), entry.doc_spec)


def parse_indexes(text: str) -> tuple[str, ...]:
    """Split `Flat;HNSW32;IVF256,PQ48` on `;` (commas belong to the factory strings)."""
    factories = tuple(dict.fromkeys(part.strip() for part in text.split(";") if part.strip()))
    if not factories:
        raise ValueError("no index factories given: use FACTORY;FACTORY;... e.g. Flat;HNSW32;IVF256,PQ48")
    return factories


def parse_sweep(text: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Parse `nprobe=1,2,4;efSearch=16,32;k_factor=1,2` into (name, values) pairs, naming what is wrong."""
    sweep: dict[str, tuple[float, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"bad sweep item {item!r}: use NAME=V1,V2,... with NAME in {', '.join(SEARCH_PARAMS)}")
        if name not in SEARCH_PARAMS:
            raise ValueError(f"unknown search parameter {name!r} in --sweep: use one of {', '.join(SEARCH_PARAMS)}")
        if name in sweep:
            raise ValueError(f"search parameter {name!r} appears twice in --sweep; list all its values once")
        numbers = []
        for value in filter(None, (v.strip() for v in values.split(","))):
            try:
                number = float(value)
            except ValueError as err:
                raise ValueError(f"sweep value {value!r} of {name} is not a number") from err
            if not number >= 1:
                raise ValueError(f"sweep value {value} of {name} must be >= 1")
            numbers.append(_clean_number(number))
        if not numbers:
            raise ValueError(f"sweep item {item!r} lists no values: use {name}=V1,V2,...")
        sweep[name] = tuple(dict.fromkeys(numbers))
    return tuple(sweep.items())


def _clean_number(value: float) -> float:
    return int(value) if float(value).is_integer() else float(value)


def make_bench_spec(
    encoders: str,
    indexes: str = "Flat",
    sweep: str = "",
    doc_encoder: str | None = None,
    teacher: str = "teacher",
    **options: Any,
) -> BenchSpec:
    """A `BenchSpec` from the command-line strings (see `parse_encoders`, `parse_indexes`, `parse_sweep`)."""
    return BenchSpec(
        encoders=parse_encoders(encoders, default_doc_spec=doc_encoder or teacher),
        indexes=parse_indexes(indexes),
        sweep=parse_sweep(sweep),
        teacher=teacher,
        **options,
    )


def sweep_grid(factory: str, sweep: Mapping[str, Sequence[float]]) -> list[tuple[dict[str, float], bool]]:
    """The parameter settings to measure for one factory, each with whether it is the default setting.

    Only parameters that apply are swept (nprobe for IVF, efSearch for HNSW, k_factor for RFlat), as a cross
    product; the others keep their defaults. The default setting is always included (the loss split needs it);
    nprobe values above the list count are skipped as they would repeat nprobe = nlist.
    """
    defaults = {name: _clean_number(value) for name, value in default_search_params(factory).items()}
    values: dict[str, list[float]] = {}
    for name in defaults:
        wanted = list(sweep.get(name, ()))
        if name == "nprobe" and (nlist := re.search(r"IVF(\d+)", factory)):
            wanted = [v for v in wanted if v <= int(nlist.group(1))]
        values[name] = wanted or [defaults[name]]
    grid = [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]
    if defaults not in grid:
        grid.append(dict(defaults))
    return [(params, params == defaults) for params in grid]


def format_params(params: Mapping[str, float]) -> str:
    return ",".join(f"{name}={value}" for name, value in params.items()) or "-"


# ----------------------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class EncodedQueries:
    """An encoder's query vectors (encoded one at a time), each query's encode time, and the batch time."""

    vectors: np.ndarray
    seconds: list[float]
    batch_seconds: float


def encode_queries_timed(encoder: Encoder, texts: list[str], batch: int = BATCH) -> EncodedQueries:
    """Encode each query alone (timed; these vectors are the ones searched) and all of them in batches."""
    for text in texts[:WARMUP_QUERIES]:
        encoder.encode([text], kind="query", batch_size=1)
    vectors, seconds = [], []
    for text in texts:
        started = time.perf_counter()
        vectors.append(encoder.encode([text], kind="query", batch_size=1)[0])
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        encoder.encode(texts[start : start + batch], kind="query", batch_size=batch)
    return EncodedQueries(np.stack(vectors).astype(np.float32), seconds, time.perf_counter() - started)


def time_single_searches(index: Any, queries: np.ndarray, k: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Search each query alone `repeats` times; returns each query's fastest time (s) and its top-k positions."""
    for row in range(min(WARMUP_QUERIES, len(queries))):
        index.search(queries[row : row + 1], k)
    best = np.full(len(queries), np.inf)
    positions = np.empty((len(queries), k), dtype=np.int64)
    for _ in range(repeats):
        for row in range(len(queries)):
            started = time.perf_counter()
            _, found = index.search(queries[row : row + 1], k)
            best[row] = min(best[row], time.perf_counter() - started)
            positions[row] = found[0]
    return best, positions


def time_batch_search(index: Any, queries: np.ndarray, k: int, repeats: int, batch: int = BATCH) -> float:
    """Fastest of `repeats` passes over the queries in batches of `batch` (seconds for all of them)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(queries), batch):
            index.search(queries[start : start + batch], k)
        best = min(best, time.perf_counter() - started)
    return best


def precision_of(encoder: Encoder) -> str:
    """int8 for a quantized ONNX model (its onnx_config.json precision), else fp32."""
    return "int8" if encoder.identity().get("precision") == "int8" else "fp32"


def fp32_counterparts(entries: Sequence[EncoderEntry], precisions: Mapping[str, str]) -> dict[str, str | None]:
    """label -> label of its fp32 counterpart: the entry's `^label`, else `X` for an int8 entry labelled `X-int8`;
    fp32 entries are their own counterpart."""
    labels = {entry.label for entry in entries}
    out: dict[str, str | None] = {}
    for entry in entries:
        if entry.fp32_of:
            out[entry.label] = entry.fp32_of
        elif precisions[entry.label] == "fp32":
            out[entry.label] = entry.label
        else:
            base = re.sub(r"[-_]int8$", "", entry.label)
            out[entry.label] = base if base != entry.label and base in labels else None
    return out


def top_ids(positions: np.ndarray, doc_ids: Sequence[str]) -> list[list[str]]:
    return [[doc_ids[p] for p in row if p >= 0] for row in positions]


# ------------------------------------------------------------------------------------------------ selections


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Set `pareto` on every row: on the frontier of recall@10_vs_teacher (up) vs total_ms_p50 (down)."""
    mask = pareto_mask([(row["recall@10_vs_teacher"], row["total_ms_p50"]) for row in rows])
    for row, keep in zip(rows, mask, strict=True):
        row["pareto"] = keep


def best_under_budget(
    rows: Sequence[Mapping[str, Any]], budget_ms: float | None = None, budget_bytes: float | None = None
) -> dict[str, Any]:
    """The row with the highest recall@10_vs_teacher (ties: lower total_ms_p50) whose total_ms_p50 (encoder +
    index) <= budget_ms and bytes_per_vector <= budget_bytes; `best` is None and `message` says so if none fits."""
    fits = [
        row
        for row in rows
        if (budget_ms is None or row["total_ms_p50"] <= budget_ms)
        and (budget_bytes is None or row["bytes_per_vector"] <= budget_bytes)
    ]
    limits = " and ".join(
        text
        for text, value in (
            (f"total_ms_p50 <= {budget_ms} ms", budget_ms),
            (f"bytes_per_vector <= {budget_bytes}", budget_bytes),
        )
        if value is not None
    )
    if not fits:
        message = f"no configuration fits {limits or 'the budget'}"
        if rows:
            fastest = min(rows, key=lambda r: r["total_ms_p50"])
            smallest = min(rows, key=lambda r: r["bytes_per_vector"])
            message += (
                f"; the fastest is {describe(fastest)} at {fastest['total_ms_p50']:.3g} ms, the smallest "
                f"{describe(smallest)} at {smallest['bytes_per_vector']:.4g} bytes/vector"
            )
        return {"budget_ms": budget_ms, "budget_bytes": budget_bytes, "best": None, "message": message}
    best = max(fits, key=lambda r: (r["recall@10_vs_teacher"], -r["total_ms_p50"]))
    message = (
        f"best under {limits or 'no budget'}: {describe(best)} with recall@10 vs teacher "
        f"{best['recall@10_vs_teacher']:.3f}, total p50 {best['total_ms_p50']:.3g} ms, "
        f"{best['bytes_per_vector']:.4g} bytes/vector"
    )
    return {"budget_ms": budget_ms, "budget_bytes": budget_bytes, "best": dict(best), "message": message}


def describe(row: Mapping[str, Any]) -> str:
    params = f" ({format_params(row['params'])})" if row["params"] else ""
    return f"{row['encoder']} + {row['index']}{params}"


def loss_split(
    rows: Sequence[Mapping[str, Any]],
    entries: Sequence[EncoderEntry],
    exact_vs_teacher: Mapping[str, float],
    int8_overlap: Mapping[str, float | None],
    counterparts: Mapping[str, str | None],
    precisions: Mapping[str, str],
) -> dict[str, Any]:
    """Where the recall goes, per encoder: encoder vs teacher, int8 vs fp32, and each index vs exact search."""
    split = []
    for entry in entries:
        fp32 = counterparts[entry.label]
        own = exact_vs_teacher[entry.label]
        item: dict[str, Any] = {
            "encoder": entry.label,
            "doc_encoder": doc_encoder_name(entry, entries),
            "precision": precisions[entry.label],
            "fp32_counterpart": fp32,
            "exact_recall@10_vs_teacher": own,
            "student_vs_teacher": None,
            "int8_vs_fp32": None,
            "ann_vs_exact": {},
        }
        if fp32 is not None:
            base = exact_vs_teacher[fp32]
            item["student_vs_teacher"] = {"encoder": fp32, "recall@10_vs_teacher": base, "loss": 1.0 - base}
            if fp32 != entry.label:
                item["int8_vs_fp32"] = {
                    "fp32": fp32,
                    "loss": base - own,
                    "top10_overlap_with_fp32": int8_overlap.get(entry.label),
                }
        for row in rows:
            if row["encoder"] == entry.label and row["default_params"]:
                item["ann_vs_exact"][row["index"]] = {
                    "params": row["params"],
                    "recall@10_vs_exact": row["recall@10_vs_exact"],
                    "loss": 1.0 - row["recall@10_vs_exact"],
                    "recall@10_vs_teacher": row["recall@10_vs_teacher"],
                }
        split.append(item)
    return {"definitions": LOSS_DEFINITIONS, "encoders": split}


# ------------------------------------------------------------------------------------------------------ run


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no heavy imports)."""
    versions: dict[str, str | None] = {}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def bench_machine(threads: int) -> dict[str, Any]:
    import faiss

    info = machine_info(threads)
    info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    info["faiss_compile_options"] = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else None
    info["versions"] = package_versions()
    return info


def _select_queries(dataset: Dataset, split: str, max_queries: int | None):
    query_ids, texts, qrels = dataset.split_queries(split)
    if max_queries is not None:
        query_ids, texts = query_ids[:max_queries], texts[:max_queries]
        qrels = {qid: qrels[qid] for qid in query_ids}
    return query_ids, texts, qrels


def run_bench(spec: BenchSpec, out_dir: Path | str) -> list[dict[str, Any]]:
    """Measure every configuration of `spec`, write all outputs into `out_dir`, and return the rows."""
    import faiss

    out_dir = Path(out_dir)
    dataset = load_dataset(spec.dataset)
    query_ids, texts, qrels = _select_queries(dataset, spec.split, spec.max_queries)
    doc_ids = [doc.id for doc in dataset.corpus]

    # load and check everything before the long work starts
    encoders: dict[str, Encoder] = {}

    def encoder(model_spec: str) -> Encoder:
        if model_spec not in encoders:
            encoders[model_spec] = load_encoder(model_spec, threads=spec.threads)
        return encoders[model_spec]

    encoder(spec.teacher)
    for entry in spec.encoders:
        query_enc = encoder(entry.spec)
        doc_enc = encoder(entry.doc_spec or entry.spec)
        if query_enc.dim != doc_enc.dim:
            raise ValueError(
                f"encoder {entry.label!r}: {query_enc.dim}-d queries cannot search {doc_enc.dim}-d documents "
                f"encoded by {entry.doc_spec!r}; an asymmetric pair must share one embedding space"
            )
        for factory in spec.indexes:
            validate_factory(factory, query_enc.dim)
    sweep = spec.sweep_dict()
    unused = [name for name in sweep if not any(name in default_search_params(f) for f in spec.indexes)]
    if unused:
        logger.warning("--sweep %s applies to none of the indexes %s", ", ".join(unused), "; ".join(spec.indexes))
    precisions = {entry.label: precision_of(encoder(entry.spec)) for entry in spec.encoders}
    counterparts = fp32_counterparts(spec.encoders, precisions)

    omp_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(spec.threads)
    try:
        corpus_vectors: dict[str, np.ndarray] = {}
        queries: dict[str, EncodedQueries] = {}

        def docs_of(model_spec: str) -> np.ndarray:
            if model_spec not in corpus_vectors:
                embeddings = encode_corpus(encoder(model_spec), dataset.corpus, show_progress=spec.show_progress)
                corpus_vectors[model_spec] = embeddings.vectors
            return corpus_vectors[model_spec]

        def queries_of(model_spec: str) -> EncodedQueries:
            if model_spec not in queries:
                logger.info("encoding %d queries one at a time with %s", len(texts), model_spec)
                queries[model_spec] = encode_queries_timed(encoder(model_spec), texts)
            return queries[model_spec]

        _, teacher_top = exact_search(queries_of(spec.teacher).vectors, docs_of(spec.teacher), TOP_K)
        teacher_ids = teacher_top.tolist()  # computed once: the ground truth of recall@10_vs_teacher
        exact_top: dict[str, list[list[int]]] = {}
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        grids = {factory: sweep_grid(factory, sweep) for factory in spec.indexes}
        total = len(spec.encoders) * sum(len(grid) for grid in grids.values())
        for entry in spec.encoders:  # all encoding first, with its own progress bars (rich shows one at a time)
            _, own_top = exact_search(queries_of(entry.spec).vectors, docs_of(entry.doc_spec or entry.spec), TOP_K)
            exact_top[entry.label] = own_top.tolist()
        with make_progress(spec.show_progress) as progress:
            task = progress.add_task("benchmarking", total=total, info="")
            for entry in spec.encoders:
                encoded, docs = queries_of(entry.spec), docs_of(entry.doc_spec or entry.spec)
                for factory in spec.indexes:
                    progress.update(task, info=f"{entry.label} {factory}: building")
                    try:
                        new_rows = _bench_index(spec, entry, factory, grids[factory], docs, encoded,
                                                teacher_ids, exact_top[entry.label], doc_ids, query_ids, qrels,
                                                encoder(entry.spec), precisions[entry.label],
                                                lambda info: progress.update(task, advance=1, info=info))  # fmt: skip
                    except IndexBuildError as err:  # e.g. more IVF lists or PQ centroids than documents to train on
                        logger.warning("skipping %s on %s: %s", factory, entry.label, err)
                        skipped.append({"encoder": entry.label, "index": factory, "reason": str(err)})
                        progress.update(task, advance=len(grids[factory]))
                        continue
                    rows.extend(new_rows)
    finally:
        faiss.omp_set_num_threads(omp_before)
    if not rows:
        raise ValueError(f"no configuration could be built: {'; '.join(s['reason'] for s in skipped)}")
    mark_pareto(rows)
    exact_vs_teacher = {label: knn_recall(top, teacher_ids, TOP_K) for label, top in exact_top.items()}
    overlap = {
        label: knn_recall(exact_top[label], exact_top[fp32], TOP_K) if fp32 and fp32 != label else None
        for label, fp32 in counterparts.items()
    }
    losses = loss_split(rows, spec.encoders, exact_vs_teacher, overlap, counterparts, precisions)
    write_outputs(spec, out_dir, rows, losses, skipped, dataset.name, len(query_ids))
    return rows


def _bench_index(
    spec: BenchSpec,
    entry: EncoderEntry,
    factory: str,
    grid: list[tuple[dict[str, float], bool]],
    docs: np.ndarray,
    encoded: EncodedQueries,
    teacher_ids: list[list[int]],
    exact_ids: list[list[int]],
    doc_ids: list[str],
    query_ids: list[str],
    qrels: Mapping[str, Mapping[str, int]],
    query_encoder: Encoder,
    precision: str,
    advance: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Build one index over `docs` and measure it at every setting of `grid`."""
    try:
        built = build_index(docs, IndexSpec(factory, train_sample=spec.train_sample, seed=spec.seed))
    except ValueError as err:
        raise IndexBuildError(str(err)) from err
    index = built.index
    size = bytes_per_vector(index)
    k, recall_k = min(TOP_K, index.ntotal), min(RECALL_K, index.ntotal)
    rows = []
    for params, is_default in grid:
        apply_search_params(index, params)
        search_s, top = time_single_searches(index, encoded.vectors, k, spec.repeats)
        _, top_recall = index.search(encoded.vectors, recall_k)  # untimed: only for recall@100
        batch_s = time_batch_search(index, encoded.vectors, k, spec.repeats)
        total_s = np.asarray(encoded.seconds) + search_s
        found = top.tolist()
        ranking = dict(zip(query_ids, top_ids(top, doc_ids), strict=True))
        ranking_100 = dict(zip(query_ids, top_ids(top_recall, doc_ids), strict=True))
        rows.append(
            {
                "encoder": entry.label,
                "encoder_spec": entry.spec,
                "doc_encoder": doc_encoder_name(entry, spec.encoders),
                "precision": precision,
                "index": factory,
                "params": params,
                "default_params": is_default,
                "recall@10_vs_teacher": knn_recall(found, teacher_ids, TOP_K),
                "recall@10_vs_exact": knn_recall(found, exact_ids, TOP_K),
                "ndcg@10": ndcg_at_k(ranking, qrels, 10),
                "recall@100": recall_at_k(ranking_100, qrels, RECALL_K),
                "encode_ms_p50": percentile_ms(encoded.seconds, 50),
                "encode_ms_p95": percentile_ms(encoded.seconds, 95),
                "search_ms_p50": percentile_ms(list(search_s), 50),
                "search_ms_p95": percentile_ms(list(search_s), 95),
                "total_ms_p50": percentile_ms(list(total_s), 50),
                "total_ms_p95": percentile_ms(list(total_s), 95),
                "qps_batch64": len(query_ids) / (encoded.batch_seconds + batch_s),
                "bytes_per_vector": size,
                "model_bytes": query_encoder.model_bytes(),
                "build_s": built.train_seconds + built.add_seconds,
                "train_s": built.train_seconds,
                "dim": int(docs.shape[1]),
                "queries": len(query_ids),
                "pareto": False,
            }
        )
        advance(f"{entry.label} {factory} {format_params(params)}")
    return rows


# ---------------------------------------------------------------------------------------------------- outputs


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROW_KEYS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "params": format_params(row["params"])})
    return buffer.getvalue()


def write_outputs(
    spec: BenchSpec,
    out_dir: Path,
    rows: list[dict[str, Any]],
    losses: dict[str, Any],
    skipped: list[dict[str, str]],
    dataset_name: str,
    n_queries: int,
) -> dict[str, Any]:
    """results.json/csv/md, machine.json, loss_split.json, summary.json and the plots, each written atomically."""
    from search.bench.plots import write_plots

    machine = bench_machine(spec.threads)
    budget = (
        best_under_budget(rows, spec.budget_ms, spec.budget_bytes)
        if spec.budget_ms is not None or spec.budget_bytes is not None
        else None
    )
    teacher_label = next((e.label for e in spec.encoders if e.spec == spec.teacher and e.doc_spec is None), None)
    plots = write_plots(rows, out_dir, reference=(teacher_label, "Flat") if teacher_label else None)
    summary = {
        "dataset": dataset_name,
        "split": spec.split,
        "queries": n_queries,
        "teacher": spec.teacher,
        "configurations": len(rows),
        "budget": budget,
        "pareto": [
            {key: row[key] for key in ("encoder", "index", "params", "recall@10_vs_teacher", "total_ms_p50")}
            for row in rows
            if row["pareto"]
        ],
        "skipped": skipped,
        "plots": [path.name for path in plots],
        "spec": {**asdict(spec), "encoders": [asdict(e) for e in spec.encoders]},
        "machine": machine,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", rows)
    write_text_atomic(out_dir / "results.csv", rows_csv(rows))
    write_json_atomic(out_dir / "machine.json", machine)
    write_json_atomic(out_dir / "loss_split.json", losses)
    write_json_atomic(out_dir / "summary.json", summary)
    write_text_atomic(out_dir / "results.md", results_markdown(summary, rows, losses))
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def results_markdown(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], losses: Mapping[str, Any]) -> str:
    machine = summary["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
    lines = [
        f"# Recall vs latency on {summary['dataset']} ({summary['split']} split, {summary['queries']} queries)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads "
        f"(FAISS {machine['faiss_omp_threads']} OpenMP threads). {versions}.",
        "",
        f"Ground truth of recall@10 vs teacher: the exact top-10 of `{summary['teacher']}`. Latency is per query "
        f"(batch 1): encode once per query, search the fastest of {summary['spec']['repeats']} repeats; total = "
        f"encode + search, p50/p95 over queries. Search asks for the top {TOP_K}; recall@100 comes from a second, "
        f"untimed top-{RECALL_K} search. QPS@64 = queries / (encode + search time in batches of {BATCH}). "
        "★ = on the Pareto frontier of recall@10 vs teacher and total p50.",
        "",
        "## Budget",
        "",
        summary["budget"]["message"] if summary["budget"] else "No budget given (--budget-ms / --budget-bytes).",
        "",
        "## Results",
        "",
        "| encoder | docs | prec | index | params | R@10 vs teacher | R@10 vs exact | nDCG@10 | R@100 | encode p50 "
        "| search p50 | total p50 | total p95 | QPS@64 | B/vec | build s | ★ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['encoder']} | {row['doc_encoder']} | {row['precision']} | {row['index']} | "
            f"{format_params(row['params'])} | {row['recall@10_vs_teacher']:.3f} | {row['recall@10_vs_exact']:.3f} | "
            f"{row['ndcg@10']:.4f} | {row['recall@100']:.3f} | {row['encode_ms_p50']:.3g} | "
            f"{row['search_ms_p50']:.3g} | {row['total_ms_p50']:.3g} | {row['total_ms_p95']:.3g} | "
            f"{row['qps_batch64']:.0f} | {row['bytes_per_vector']:.4g} | {row['build_s']:.2f} | "
            f"{'★' if row['pareto'] else ''} |"
        )
    lines += ["", "## Where the recall goes", ""]
    lines += [f"- **{name}**: {text}." for name, text in losses["definitions"].items()]
    lines += [
        "",
        "| encoder | prec | fp32 counterpart | exact R@10 vs teacher | student vs teacher loss | int8 vs fp32 loss "
        "| int8/fp32 top-10 overlap |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in losses["encoders"]:
        student, int8 = item["student_vs_teacher"] or {}, item["int8_vs_fp32"] or {}
        lines.append(
            f"| {item['encoder']} | {item['precision']} | {item['fp32_counterpart'] or '-'} | "
            f"{item['exact_recall@10_vs_teacher']:.3f} | {_fmt(student.get('loss'))} | {_fmt(int8.get('loss'))} | "
            f"{_fmt(int8.get('top10_overlap_with_fp32'))} |"
        )
    lines += ["", "ANN/PQ loss vs exact search at default parameters (1 - recall@10 vs exact):", ""]
    lines += ["| encoder | index | params | loss | R@10 vs teacher |", "|---|---|---|---|---|"]
    for item in losses["encoders"]:
        for factory, ann in item["ann_vs_exact"].items():
            lines.append(
                f"| {item['encoder']} | {factory} | {format_params(ann['params'])} | {ann['loss']:.3f} | "
                f"{ann['recall@10_vs_teacher']:.3f} |"
            )
    if summary["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['encoder']} + {s['index']}: {s['reason']}" for s in summary["skipped"]]
    if summary["plots"]:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in summary["plots"]]
    return "\n".join(lines) + "\n"
