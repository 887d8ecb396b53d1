"""The sweep runner: build one index over an encoder's documents, then measure it at every search-parameter setting
(ann-benchmarks style: each query searched alone, best of `repeats` per query) into one result row per setting."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexes.faiss_index import (
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    search_index,
    split_rescore_params,
)
from indexes.ids import DocIdMap
from indexes.rescore import Rescorer
from search.bench.ann.encoders import EncodedQueries
from search.bench.ann.spec import BATCH, RECALL_K, TOP_K, BenchSpec, EncoderEntry, doc_encoder_name, format_params
from search.evaluation.metrics import knn_recall, ndcg_at_k, recall_at_k
from semsearch_common.timing import percentile_ms, time_each, time_pass

ROW_KEYS = (
    "encoder", "encoder_spec", "doc_encoder", "precision", "index", "params", "default_params",
    "recall@10_vs_teacher", "recall@10_vs_exact", "ndcg@10", "recall@100",
    "encode_ms_p50", "encode_ms_p95", "search_ms_p50", "search_ms_p95", "total_ms_p50", "total_ms_p95",
    "qps_batch64", "bytes_per_vector", "model_bytes", "build_s", "train_s", "dim", "queries", "pareto",
)  # fmt: skip


class IndexBuildError(ValueError):
    """An index could not be trained on this corpus (too few vectors for its lists or codebooks)."""


@dataclass(frozen=True)
class RunContext:
    """What is fixed for a whole run: the spec, the queries' ids and qrels, the corpus ids and the teacher's exact
    top-10 positions (the ground truth of recall@10_vs_teacher)."""

    spec: BenchSpec
    query_ids: list[str]
    qrels: Mapping[str, Mapping[str, int]]
    doc_ids: DocIdMap
    teacher_top: list[list[int]]


@dataclass(frozen=True)
class EncoderRun:
    """One encoder entry ready to search: its document and query vectors, its own exact top-10 positions (the
    ground truth of recall@10_vs_exact), its precision and its model size."""

    entry: EncoderEntry
    docs: np.ndarray
    queries: EncodedQueries
    exact_top: list[list[int]]
    precision: str
    model_bytes: int


Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, positions)


def searcher(index: Any, docs: np.ndarray, params: Mapping[str, float]) -> Search:
    """How a pipeline with these parameters searches: the index alone, or (`oversample`) its top k x oversample
    rescored exactly with the rows an fp16 vector file would give (`docs` as fp16, read from RAM)."""
    oversample = split_rescore_params(params)[1]
    if oversample is None:
        return lambda queries, k: search_index(index, queries, k)
    rescorer = Rescorer.from_array(index, docs.astype(np.float16), oversample)

    def rescored(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = rescorer.search(queries, k)
        return found.scores, found.positions

    return rescored


def time_single_searches(search: Search, queries: np.ndarray, k: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Search each query alone, after the warm-up of `semsearch_common.timing`, `repeats` times; returns each query's
    fastest time (s) and its top-k positions."""
    timed = time_each(lambda query: search(query[None, :], k)[1][0], list(queries), repeats=repeats,
                      best="per_item")  # fmt: skip
    return timed.seconds, np.stack(timed.results) if timed.results else np.empty((0, k), dtype=np.int64)


def time_batch_search(search: Search, queries: np.ndarray, k: int, repeats: int, batch: int = BATCH) -> float:
    """Fastest of `repeats` passes over the queries in batches of `batch` (seconds for all of them)."""

    def search_in_batches() -> None:
        for start in range(0, len(queries), batch):
            search(queries[start : start + batch], k)

    return time_pass(search_in_batches, repeats=repeats)


def bench_index(
    context: RunContext,
    run: EncoderRun,
    factory: str,
    grid: list[tuple[dict[str, float], bool]],
    advance: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Build one `factory` index over `run.docs` and measure it at every setting of `grid` (one row each);
    `advance` is called with a label after each setting."""
    spec, encoded = context.spec, run.queries
    try:
        built = build_index(run.docs, IndexSpec(factory, train_sample=spec.train_sample, seed=spec.seed))
    except ValueError as err:
        raise IndexBuildError(str(err)) from err
    index = built.index
    size = bytes_per_vector(index)
    k, recall_k = min(TOP_K, index.ntotal), min(RECALL_K, index.ntotal)
    rows = []
    for params, is_default in grid:
        apply_search_params(index, params)
        search = searcher(index, run.docs, params)
        search_s, top = time_single_searches(search, encoded.vectors, k, spec.repeats)
        _, top_recall = search(encoded.vectors, recall_k)  # untimed: only for recall@100
        batch_s = time_batch_search(search, encoded.vectors, k, spec.repeats)
        total_s = encoded.seconds + search_s
        found = top.tolist()
        ranking = dict(zip(context.query_ids, context.doc_ids.to_ids(top), strict=True))
        ranking_100 = dict(zip(context.query_ids, context.doc_ids.to_ids(top_recall), strict=True))
        rows.append(
            {
                "encoder": run.entry.label,
                "encoder_spec": run.entry.spec,
                "doc_encoder": doc_encoder_name(run.entry, spec.encoders),
                "precision": run.precision,
                "index": factory,
                "params": params,
                "default_params": is_default,
                "recall@10_vs_teacher": knn_recall(found, context.teacher_top, TOP_K),
                "recall@10_vs_exact": knn_recall(found, run.exact_top, TOP_K),
                "ndcg@10": ndcg_at_k(ranking, context.qrels, 10),
                "recall@100": recall_at_k(ranking_100, context.qrels, RECALL_K),
                "encode_ms_p50": percentile_ms(encoded.seconds, 50),
                "encode_ms_p95": percentile_ms(encoded.seconds, 95),
                "search_ms_p50": percentile_ms(search_s, 50),
                "search_ms_p95": percentile_ms(search_s, 95),
                "total_ms_p50": percentile_ms(total_s, 50),
                "total_ms_p95": percentile_ms(total_s, 95),
                "qps_batch64": len(context.query_ids) / (encoded.batch_seconds + batch_s),
                "bytes_per_vector": size,
                "model_bytes": run.model_bytes,
                "build_s": built.train_seconds + built.add_seconds,
                "train_s": built.train_seconds,
                "dim": int(run.docs.shape[1]),
                "queries": len(context.query_ids),
                "pareto": False,
            }
        )
        advance(f"{run.entry.label} {factory} {format_params(params)}")
    return rows
