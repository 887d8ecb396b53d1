"""Several named pipelines served side by side: search, compare against a reference, describe, evaluate.

`PipelineSet` holds the logic of `semsearch serve`; the HTTP routes (`search.serve.app`) and the CLI only call it.
The reference pipeline (the teacher, by default) is what `compare` and the metrics summary measure the others by.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression.encoders.onnx import ONNX_CONFIG_FILE
from indexes.store import IndexDirError, index_memory
from search.data.datasets import Dataset, DatasetError, corpus_fingerprint, load_dataset
from search.embeddings import load_cached_embeddings
from search.evaluation.evaluate import evaluate, exact_top_ids
from search.evaluation.metrics import knn_recall
from search.pipeline import BatchResult, Hit, Pipeline, SearchResult, Timings

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_NAME = "default"
REFERENCE_NAME = "teacher"
METRICS_K = 10


class UnknownPipelineError(ValueError):
    """A request named a pipeline that is not loaded; the message lists the loaded ones."""


class MetricsUnavailable(Exception):
    """The metrics summary cannot be computed; `status` is the HTTP status that says why (404 or 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PipelineSource:
    """A pipeline to load: its name and index directory."""

    name: str
    index_dir: Path


def parse_pipeline_specs(specs: Sequence[str]) -> list[PipelineSource]:
    """Parse `NAME=DIR` items; names match [A-Za-z0-9_-]+ and are unique. All problems are reported together."""
    sources: list[PipelineSource] = []
    problems: list[str] = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not folder.strip():
            problems.append(f"{spec!r} is not NAME=DIR")
        elif not NAME_PATTERN.match(name):
            problems.append(f"pipeline name {name!r} must match [A-Za-z0-9_-]+")
        else:
            sources.append(PipelineSource(name, Path(folder.strip()).expanduser()))
    problems += duplicate_name_problems(sources)
    if problems:
        raise ValueError("bad --pipeline: " + "; ".join(problems) + " (expected NAME=DIR, e.g. teacher=indexes/t)")
    return sources


def duplicate_name_problems(sources: Sequence[PipelineSource]) -> list[str]:
    names = [source.name for source in sources]
    return [
        f"pipeline name {name!r} is used {names.count(name)} times"
        for name in dict.fromkeys(names)
        if names.count(name) > 1
    ]


def choose_reference(names: Sequence[str], reference: str | None) -> str:
    """`reference` if loaded, else `teacher` if loaded, else the first pipeline."""
    if not names:
        raise ValueError("no pipelines loaded: give --index-dir DIR or --pipeline NAME=DIR")
    if reference is not None:
        if reference not in names:
            raise ValueError(f"reference pipeline {reference!r} is not loaded; loaded: {', '.join(names)}")
        return reference
    return REFERENCE_NAME if REFERENCE_NAME in names else names[0]


def encoder_precision(identity: Mapping[str, Any]) -> dict[str, Any]:
    """Weight precision of an encoder from its stored identity: ONNX folders say so (identity, else their
    onnx_config.json, which also names the int8 quantization mode); torch and fake encoders are fp32."""
    if identity.get("type") != "onnx":
        return {"precision": "fp32", "quantization": None}
    config: dict[str, Any] = {}
    config_path = Path(str(identity.get("path", ""))) / ONNX_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("cannot read %s (%s): precision taken from the index metadata only", config_path, err)
    precision = identity.get("precision") or config.get("precision") or "fp32"
    return {"precision": precision, "quantization": config.get("quantization")}


MIN_TIMED_MS = 1e-3  # a time below the clock's resolution counts as this much (no division by zero)


def speedup(reference_ms: float, ms: float) -> float:
    """How many times faster than the reference: `reference_ms / ms`."""
    return reference_ms / max(ms, MIN_TIMED_MS)


@dataclass(frozen=True)
class Comparison:
    """One pipeline's answer to a compared query, measured against the reference's answer."""

    hits: list[Hit]
    timings: Timings
    recall_vs_reference: float  # knn_recall of this top-k against the reference's (1.0 when that is empty)
    missing: list[str]  # in the reference's top-k, not in this one's
    extra: list[str]  # in this one's top-k, not in the reference's
    reference_ranks: list[int | None]  # per hit: its 1-based rank in the reference's top-k, None when not there
    speedup_vs_reference: float  # the reference's total_ms / this one's (1.0 for the reference itself)


@dataclass(frozen=True)
class CompareResult:
    query: str
    k: int
    reference: str
    pipelines: dict[str, Comparison]


class PipelineSet:
    """Named pipelines, the first the default, one the reference, with an optional timings observer."""

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        reference: str | None = None,
        metrics_dataset: str | None = None,
        metrics_split: str = "test",
        observer: Callable[[str, Timings], None] | None = None,
        batch_observer: Callable[[str, Timings, int], None] | None = None,
    ) -> None:
        self.pipelines = dict(pipelines)
        self.reference = choose_reference(list(self.pipelines), reference)
        self.metrics_dataset = metrics_dataset
        self.metrics_split = metrics_split
        self._observer = observer
        self._batch_observer = batch_observer

    @classmethod
    def load(
        cls,
        sources: Sequence[PipelineSource],
        threads: int | None = None,
        search_params: Mapping[str, float] | None = None,
        batch_search_threads: int | None = None,
        mmap: bool = False,
        **options: Any,
    ) -> PipelineSet:
        """Load every index directory and its encoder (`options` go to the constructor); `threads`: encoder threads,
        `batch_search_threads`: FAISS's OpenMP cap for batch searches (see `Pipeline`), `mmap`: memory-map the
        indexes."""
        problems = duplicate_name_problems(sources)
        if problems:
            raise ValueError("; ".join(problems))
        pipelines = {}
        for source in sources:
            logger.info("loading pipeline %s from %s", source.name, source.index_dir)
            pipelines[source.name] = Pipeline.load(
                source.index_dir,
                threads=threads,
                search_params=search_params,
                batch_search_threads=batch_search_threads,
                mmap=mmap,
            )
        return cls(pipelines, **options)

    @property
    def names(self) -> list[str]:
        return list(self.pipelines)

    @property
    def default(self) -> str:
        return self.names[0]

    def resolve(self, name: str | None) -> str:
        """The pipeline a request means: `name`, or the first loaded when none is given."""
        if name is None:
            return self.default
        if name not in self.pipelines:
            raise UnknownPipelineError(f"unknown pipeline {name!r}; loaded: {', '.join(self.names)}")
        return name

    def get(self, name: str | None = None) -> Pipeline:
        return self.pipelines[self.resolve(name)]

    def search(self, query: str, k: int, name: str | None = None) -> tuple[str, SearchResult]:
        name = self.resolve(name)
        result = self.pipelines[name].search(query, k)
        if self._observer:
            self._observer(name, result.timings)
        return name, result

    def search_batch(
        self, queries: Sequence[str], k: int, name: str | None = None, **options: Any
    ) -> tuple[str, BatchResult]:
        """`Pipeline.search_batch` on pipeline `name` (`options`: its micro_batch and checkpoint)."""
        name = self.resolve(name)
        result = self.pipelines[name].search_batch(queries, k, **options)
        if self._batch_observer:
            self._batch_observer(name, result.timings, len(queries))
        return name, result

    def compared_names(self, names: Sequence[str] | None = None) -> list[str]:
        """The pipelines a comparison of `names` runs, in loading order: those named (every one when None), and the
        reference, which the others are measured against."""
        if names is None:
            return self.names
        for name in names:
            self.resolve(name)  # UnknownPipelineError names the loaded ones
        wanted = {*names, self.reference}
        return [name for name in self.names if name in wanted]

    def compare(self, query: str, k: int, names: Sequence[str] | None = None) -> CompareResult:
        """Run the pipelines of `names` (every one by default; the reference always) on `query`; measure each top-k
        against the reference's top-k."""
        chosen = self.compared_names(names)
        return self.compare_results(query, k, {name: self.search(query, k, name)[1] for name in chosen})

    def compare_results(self, query: str, k: int, results: Mapping[str, SearchResult]) -> CompareResult:
        """Measure each pipeline's answer to `query` (`results`, one per pipeline) against the reference's."""
        reference = results[self.reference]
        wanted = [hit.id for hit in reference.hits]
        rank_of = {doc: rank for rank, doc in enumerate(wanted, start=1)}
        compared = {}
        for name, result in results.items():
            got = [hit.id for hit in result.hits]
            got_set = set(got)
            compared[name] = Comparison(
                hits=result.hits,
                timings=result.timings,
                recall_vs_reference=knn_recall([got], [wanted], k),
                missing=[doc for doc in wanted if doc not in got_set],
                extra=[doc for doc in got if doc not in rank_of],
                reference_ranks=[rank_of.get(doc) for doc in got],
                speedup_vs_reference=speedup(reference.timings.total_ms, result.timings.total_ms),
            )
        return CompareResult(query, k, self.reference, compared)

    def describe(self) -> dict[str, dict[str, Any]]:
        """What each pipeline is: encoder and precision, documents' encoder, mode, index, sizes and build info."""
        described = {}
        for name, pipeline in self.pipelines.items():
            meta = pipeline.meta
            described[name] = {
                **pipeline.describe(),
                # resident vs on-disk bytes, measured now (parses /proc/self/smaps: here, not in /health's describe)
                "index_memory": index_memory(pipeline.stored),
                **encoder_precision(meta["encoder"]),
                "encoder_type": meta["encoder"].get("type"),
                "doc_encoder_precision": encoder_precision(meta.get("doc_encoder", meta["encoder"]))["precision"],
                "threads": getattr(pipeline.encoder, "threads", None),
                "spinning": getattr(pipeline.encoder, "spinning", None),  # ONNX encoders: intra-op spinning
                "is_reference": name == self.reference,
            }
        return described

    # --- metrics summary -------------------------------------------------------------------------------------

    def metrics_dataset_name(self) -> str:
        """The dataset every pipeline was built on (or the configured override); 409 when they differ."""
        if self.metrics_dataset:
            return self.metrics_dataset
        built_on = {name: pipeline.meta.get("dataset") for name, pipeline in self.pipelines.items()}
        hashes = {pipeline.meta.get("corpus_hash") for pipeline in self.pipelines.values()}
        if len(set(built_on.values())) > 1 or len(hashes) > 1:
            raise MetricsUnavailable(
                409,
                "the pipelines index different corpora, so they cannot be evaluated side by side: "
                + ", ".join(f"{name} on {dataset!r}" for name, dataset in built_on.items()),
            )
        paths = {pipeline.meta.get("dataset_path") for pipeline in self.pipelines.values()}
        path = next(iter(paths)) if len(paths) == 1 else None
        if path and Path(path).is_dir():  # recorded at build time: works for datasets loaded by path too
            return str(path)
        return str(next(iter(built_on.values())))

    def load_metrics_dataset(self) -> Dataset:
        """Load the evaluation dataset (never downloading) and check it has qrels and the pipelines' corpus."""
        name = self.metrics_dataset_name()
        try:
            dataset = load_dataset(name, download=False)
        except (DatasetError, OSError) as err:
            raise MetricsUnavailable(
                404,
                f"cannot load dataset {name!r} the pipelines were built on: {err}. Start the server with "
                "--metrics-dataset NAME_OR_PATH to point at it",
            ) from err
        if self.metrics_split not in dataset.qrels:
            available = ", ".join(sorted(dataset.qrels)) or "none"
            raise MetricsUnavailable(
                404,
                f"dataset {dataset.name!r} has no qrels for split {self.metrics_split!r} (available: {available}); "
                "choose one with --metrics-split",
            )
        fingerprint = corpus_fingerprint(dataset.corpus)
        mismatched = [name for name, p in self.pipelines.items() if p.meta.get("corpus_hash") != fingerprint]
        if mismatched:
            raise MetricsUnavailable(
                409,
                f"dataset {dataset.name!r} is not the corpus that {', '.join(mismatched)} indexes (corpus hash "
                "differs); point --metrics-dataset at the dataset the indexes were built on",
            )
        return dataset

    def check_cached_document_vectors(self) -> None:
        """Refuse (409) to evaluate a pipeline whose corpus vectors are not in the embedding cache: re-encoding a
        whole corpus inside the server (the teacher: ~51 minutes for SciFact on 2 cores) would starve the searches."""
        missing = [
            name
            for name, pipeline in self.pipelines.items()
            if load_cached_embeddings(pipeline.meta.get("embedding_key", ""), pipeline.stored.index.ntotal) is None
        ]
        if missing:
            raise MetricsUnavailable(
                409,
                f"the corpus vectors of {', '.join(missing)} are not in the embedding cache ($SEMSEARCH_CACHE), and "
                "the server will not re-encode a whole corpus: run `semsearch eval --dataset DATASET --index-dir DIR` "
                "(or rebuild with `semsearch index`) for each of them on this machine, then POST /metrics/refresh",
            )

    def compute_metrics(self, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
        """The side-by-side evaluation summary (slow: every eval query through every pipeline, one at a time).

        `progress(stage, done, total)` is called between steps. Raises `MetricsUnavailable` (404/409) saying why it
        cannot be computed, before any model work."""
        report = progress or (lambda stage, done, total: None)
        total = len(self.pipelines) + 1
        report("loading the dataset", 0, total)
        dataset = self.load_metrics_dataset()
        self.check_cached_document_vectors()
        _, texts, _ = dataset.split_queries(self.metrics_split)
        reference = self.pipelines[self.reference]
        try:
            report(f"exact top-{METRICS_K} of {self.reference}", 0, total)
            reference_ids = exact_top_ids(reference, dataset, texts, METRICS_K, show_progress=False)
            reports = {}
            for done, (name, pipeline) in enumerate(self.pipelines.items(), start=1):
                report(f"evaluating {name}", done, total)
                reports[name] = evaluate(
                    pipeline,
                    dataset,
                    self.metrics_split,
                    reference=reference,
                    show_progress=False,
                    reference_top_ids=reference_ids,
                )
            report("done", total, total)
        except IndexDirError as err:
            raise MetricsUnavailable(409, str(err)) from err
        return {
            "dataset": dataset.name,
            "split": self.metrics_split,
            "queries": len(texts),
            "reference": self.reference,
            "note": (
                "recall@10_vs_teacher: overlap with the reference pipeline's encoder's exact top-10 (its document "
                "vectors, no index); recall@10_vs_exact: with the same encoder's exact top-10; latencies are per "
                "query at batch 1 over the eval queries, encode including tokenisation, search including rescoring"
            ),
            "pipelines": reports,
        }
