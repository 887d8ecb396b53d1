"""Evaluate a pipeline on a dataset split: quality vs qrels, recall vs exact search, and per-query latency."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.progress import make_progress
from indexes.exact import exact_search
from indexes.store import IndexDirError
from search.data.datasets import Dataset, corpus_fingerprint
from search.evaluation.metrics import knn_recall, mrr_at_k, ndcg_at_k, percentile_ms, recall_at_k
from search.pipeline import Pipeline

logger = logging.getLogger(__name__)

RETRIEVE_K = 100
WARMUP_QUERIES = 3


@dataclass(frozen=True)
class QueryRun:
    """Per-query rankings (string ids, best first) and stage durations in seconds, in query order."""

    query_ids: list[str]
    vectors: np.ndarray
    ranked_ids: list[list[str]]
    encode_seconds: list[float]
    search_seconds: list[float]


def run_queries(pipeline: Pipeline, texts: list[str], query_ids: list[str], k: int, show_progress: bool) -> QueryRun:
    """Encode and search one query at a time, timing each stage, after a short untimed warm-up."""
    for text in texts[:WARMUP_QUERIES]:
        pipeline.search_vectors(pipeline.encode_queries([text]), k)
    vectors, ranked, encode_s, search_s = [], [], [], []
    with make_progress(show_progress) as progress:
        task = progress.add_task("querying", total=len(texts), info="")
        for text in texts:
            t0 = time.perf_counter()
            vector = pipeline.encode_queries([text])
            t1 = time.perf_counter()
            _, positions = pipeline.search_vectors(vector, k)
            t2 = time.perf_counter()
            vectors.append(vector[0])
            ranked.append(pipeline.ids_of(positions)[0])
            encode_s.append(t1 - t0)
            search_s.append(t2 - t1)
            progress.advance(task)
    return QueryRun(query_ids, np.stack(vectors), ranked, encode_s, search_s)


def encode_latency_ms(encoder: Any, texts: list[str]) -> dict[str, float]:
    """p50/p95 of encoding one query at a time (batch 1), after a short untimed warm-up."""
    for text in texts[:WARMUP_QUERIES]:
        encoder.encode([text], kind="query", batch_size=1)
    samples = []
    for text in texts:
        started = time.perf_counter()
        encoder.encode([text], kind="query", batch_size=1)
        samples.append(time.perf_counter() - started)
    return {"encode_ms_p50": percentile_ms(samples, 50), "encode_ms_p95": percentile_ms(samples, 95)}


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
    run = run_queries(pipeline, texts, query_ids, RETRIEVE_K, show_progress)
    ranking = dict(zip(query_ids, run.ranked_ids, strict=True))
    corpus_vectors = pipeline.document_vectors(dataset, show_progress)
    _, exact_positions = exact_search(run.vectors, corpus_vectors, 10)
    exact_ids = pipeline.ids_of(exact_positions)
    total_s = [e + s for e, s in zip(run.encode_seconds, run.search_seconds, strict=True)]
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
        "recall@100": recall_at_k(ranking, qrels, 100),
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
        "search_k": RETRIEVE_K,
        "bytes_per_vector": pipeline.meta["bytes_per_vector"],
        "index_bytes": pipeline.meta["index_bytes"],
        "model_bytes": pipeline.meta["model_bytes"],
        "threads": getattr(pipeline.encoder, "threads", None),
    }
