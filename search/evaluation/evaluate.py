"""Evaluate a pipeline on a dataset split: quality vs qrels, recall vs exact search, and per-query latency."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from compression.encoders import Encoder
from indexes.exact import exact_search
from indexes.store import IndexDirError
from search.data.datasets import Dataset, corpus_fingerprint
from search.evaluation.metrics import knn_recall, mrr_at_k, ndcg_at_k, recall_at_k
from search.pipeline import Pipeline
from semsearch_common.progress import make_progress
from semsearch_common.timing import WARMUP_CALLS, TimedCalls, percentile_ms, time_each

logger = logging.getLogger(__name__)

RETRIEVE_K = 100  # recall@100 comes from a second, untimed search at this k
SEARCH_K = 10  # the timed search, and every @10 metric: what a query asks for by default
PROGRESS_CHUNK = 50  # queries timed between two progress-bar updates
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class QueryRun:
    """Per-query rankings (string ids, best first) and stage durations in seconds, in query order."""

    query_ids: list[str]
    vectors: np.ndarray
    ranked_ids: list[list[str]]
    encode_seconds: np.ndarray
    search_seconds: np.ndarray

    @property
    def total_seconds(self) -> np.ndarray:
        return self.encode_seconds + self.search_seconds


def time_each_with_progress(
    call: Callable[[T], R], items: Sequence[T], description: str, show_progress: bool
) -> TimedCalls[R]:
    """`time_each(call, items)` (warm-up, then one call at a time), with a progress bar advanced between chunks of
    items so it never runs inside a timed call; only the first chunk warms up."""
    results: list[R] = []
    seconds: list[np.ndarray] = []
    with make_progress(show_progress) as progress:
        task = progress.add_task(description, total=len(items), info="")
        for start in range(0, len(items), PROGRESS_CHUNK):
            chunk = items[start : start + PROGRESS_CHUNK]
            timed = time_each(call, chunk, warmup=WARMUP_CALLS if start == 0 else 0)
            results += timed.results
            seconds.append(timed.seconds)
            progress.advance(task, len(chunk))
    return TimedCalls(results, np.concatenate(seconds) if seconds else np.empty(0))


def run_queries(pipeline: Pipeline, texts: list[str], query_ids: list[str], k: int, show_progress: bool) -> QueryRun:
    """Encode every query one at a time, then search each vector one at a time, timing each call (after the
    untimed warm-up of `semsearch_common.timing`): encode and search times are measured apart, as `semsearch eval`
    reports."""
    if not texts:
        raise ValueError("no queries to run")
    encoded = time_each_with_progress(
        lambda text: pipeline.encode_queries([text]), texts, "encoding queries", show_progress
    )
    searched = time_each_with_progress(
        lambda vector: pipeline.search_vectors(vector, k)[1], encoded.results, "searching", show_progress
    )
    ranked = [pipeline.ids_of(positions)[0] for positions in searched.results]
    vectors = np.concatenate(encoded.results)
    return QueryRun(query_ids, vectors, ranked, encoded.seconds, searched.seconds)


def encode_latency_ms(encoder: Encoder, texts: list[str]) -> dict[str, float]:
    """p50/p95 of encoding one query at a time (batch 1), after the untimed warm-up of `semsearch_common.timing`."""
    timed = time_each(lambda text: encoder.encode([text], kind="query", batch_size=1), texts)
    return {"encode_ms_p50": timed.percentile_ms(50), "encode_ms_p95": timed.percentile_ms(95)}


def check_same_corpus(pipeline: Pipeline, dataset: Dataset) -> None:
    if pipeline.meta["corpus_hash"] != corpus_fingerprint(dataset.corpus):
        raise IndexDirError(
            f"{pipeline.stored.path} was built on dataset {pipeline.meta.get('dataset')!r} with another corpus "
            f"than {dataset.name!r}; evaluate it on the corpus it indexes"
        )


def exact_top_ids(
    pipeline: Pipeline, dataset: Dataset, texts: list[str], k: int, show_progress: bool
) -> list[list[str]]:
    """Exact top-k ids of `pipeline`'s encoder (queries and cached corpus vectors), with no index in between."""
    corpus_vectors = pipeline.document_vectors(dataset, show_progress)
    query_vectors = pipeline.encoder.encode(texts, kind="query")
    _, positions = exact_search(query_vectors, corpus_vectors, k)
    return pipeline.ids_of(positions)


def evaluate(
    pipeline: Pipeline,
    dataset: Dataset,
    split: str = "test",
    reference: Pipeline | None = None,
    show_progress: bool = True,
    reference_top_ids: list[list[str]] | None = None,
) -> dict[str, Any]:
    """All figures of `semsearch eval` for one pipeline on one split.

    With `reference` (the teacher's index), also `recall@10_vs_teacher`: the overlap of this pipeline's top-10
    with the reference encoder's exact top-10, the figure a compressed pipeline is judged by.
    """
    check_same_corpus(pipeline, dataset)
    if reference is not None:
        check_same_corpus(reference, dataset)
    query_ids, texts, qrels = dataset.split_queries(split)
    run = run_queries(pipeline, texts, query_ids, SEARCH_K, show_progress)
    ranking = dict(zip(query_ids, run.ranked_ids, strict=True))
    deep = pipeline.ids_of(pipeline.search_vectors(run.vectors, RETRIEVE_K)[1])  # untimed, for recall@100 only
    ranking_deep = dict(zip(query_ids, deep, strict=True))
    corpus_vectors = pipeline.document_vectors(dataset, show_progress)
    _, exact_positions = exact_search(run.vectors, corpus_vectors, 10)
    exact_ids = pipeline.ids_of(exact_positions)
    total_s = run.total_seconds
    versus_reference = {}
    if reference is not None:
        # callers comparing many pipelines pass the reference's exact top-10 once instead of re-encoding it
        reference_ids = reference_top_ids or exact_top_ids(reference, dataset, texts, 10, show_progress)
        versus_reference = {
            "recall@10_vs_teacher": knn_recall(run.ranked_ids, reference_ids, 10),
            "teacher": reference.meta["encoder"].get("name"),
        }
    return {
        "dataset": dataset.name,
        "split": split,
        "queries": len(query_ids),
        "encoder": pipeline.meta["encoder"].get("name"),
        "doc_encoder": pipeline.meta.get("doc_encoder", pipeline.meta["encoder"]).get("name"),
        "index": pipeline.meta["factory"],
        "search_params": pipeline.search_params,
        "ndcg@10": ndcg_at_k(ranking, qrels, 10),
        "recall@100": recall_at_k(ranking_deep, qrels, RETRIEVE_K),
        "mrr@10": mrr_at_k(ranking, qrels, 10),
        "recall@10_vs_exact": knn_recall(run.ranked_ids, exact_ids, 10),
        **versus_reference,
        "encode_ms_p50": percentile_ms(run.encode_seconds, 50),
        "encode_ms_p95": percentile_ms(run.encode_seconds, 95),
        "search_ms_p50": percentile_ms(run.search_seconds, 50),
        "search_ms_p95": percentile_ms(run.search_seconds, 95),
        "total_ms_p50": percentile_ms(total_s, 50),
        "total_ms_p95": percentile_ms(total_s, 95),
        "encode_ms_p99": percentile_ms(run.encode_seconds, 99),
        "search_ms_p99": percentile_ms(run.search_seconds, 99),
        "total_ms_p99": percentile_ms(total_s, 99),
        "search_k": SEARCH_K,
        "recall_k": RETRIEVE_K,
        "bytes_per_vector": pipeline.meta["bytes_per_vector"],
        "index_bytes": pipeline.meta["index_bytes"],
        "model_bytes": pipeline.meta["model_bytes"],
        "threads": getattr(pipeline.encoder, "threads", None),
    }
