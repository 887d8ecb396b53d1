"""The evaluator against independent computations: numpy rankings, FAISS searched directly, an encoder of known cost."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from indexes.store import IndexDirError, load_index_dir
from search.data.datasets import load_beir
from search.evaluation.evaluate import encode_latency_ms, evaluate, run_queries
from search.evaluation.metrics import knn_recall, mrr_at_k, ndcg_at_k, recall_at_k
from search.pipeline import Pipeline, build_index_dir
from semsearch_common.timing import WARMUP_CALLS

SLEEP_S = 0.002


class SlowEncoder(FakeEncoder):
    """A fake encoder that takes at least SLEEP_S per call: a known lower bound for the timed encode."""

    def encode(self, texts, kind="query", batch_size=32):
        time.sleep(SLEEP_S)
        return super().encode(texts, kind, batch_size)


def numpy_ranking(encoder, dataset, query_ids, texts, k, clear_top=10):
    """Exact top-k ids by brute-force numpy scores; checks the first `clear_top` + 1 scores of every query are
    apart by more than float noise, so FAISS and numpy must agree on that prefix (and the metrics built on it)."""
    docs = encoder.encode([doc.full_text() for doc in dataset.corpus], kind="passage")
    scores = encoder.encode(texts, kind="query") @ docs.T
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked_scores = np.take_along_axis(scores, order, axis=1)
    gaps = -np.diff(ranked_scores[:, : clear_top + 1], axis=1)
    assert (gaps > 1e-5).all(), "near-tied scores would make the comparison fragile"
    return {qid: [dataset.corpus[p].id for p in row[:k]] for qid, row in zip(query_ids, order, strict=True)}


def test_evaluate_flat_equals_metrics_of_an_independent_numpy_ranking(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    report = evaluate(Pipeline.load(tmp_path / "ix"), dataset, split="test", show_progress=False)
    qids, texts, qrels = dataset.split_queries("test")
    ranking = numpy_ranking(FakeEncoder(dim=128), dataset, qids, texts, 100)
    assert report["queries"] == len(qids) == 5
    assert (report["search_k"], report["recall_k"]) == (10, 100)  # timed at k=10; recall@100 from an untimed search
    assert report["ndcg@10"] == pytest.approx(ndcg_at_k(ranking, qrels, 10), abs=1e-9)
    assert report["mrr@10"] == pytest.approx(mrr_at_k(ranking, qrels, 10), abs=1e-9)
    assert report["recall@100"] == pytest.approx(recall_at_k(ranking, qrels, 100), abs=1e-9) == 1.0
    assert report["recall@10_vs_exact"] == 1.0  # Flat is exact
    assert report["bytes_per_vector"] == 128 * 4
    assert report["model_bytes"] == 0
    assert report["encoder"] == report["doc_encoder"] == "fake"
    assert report["index"] == "Flat"


def test_recall_vs_exact_of_an_approximate_index_equals_faiss_searched_directly(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    encoder = FakeEncoder(dim=32)
    build_index_dir(dataset, encoder, IndexSpec("PQ4x4", vectors="none"), tmp_path / "pq", show_progress=False)
    report = evaluate(Pipeline.load(tmp_path / "pq"), dataset, show_progress=False)
    qids, texts, _ = dataset.split_queries("test")
    exact = numpy_ranking(encoder, dataset, qids, texts, 10)
    index = load_index_dir(tmp_path / "pq").index
    _, positions = index.search(encoder.encode(texts), 10)
    found = [[dataset.corpus[p].id for p in row] for row in positions]
    want = knn_recall(found, [exact[q] for q in qids], 10)
    assert report["recall@10_vs_exact"] == pytest.approx(want, abs=1e-9)
    assert 0.2 < want < 1.0  # 2 bytes per vector loses neighbours
    assert report["bytes_per_vector"] == pytest.approx(2)  # 4 sub-quantizers x 4 bits


def test_recall_vs_teacher_is_the_overlap_with_the_references_exact_top10(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), tmp_path / "teacher", show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "small", show_progress=False)
    teacher = Pipeline.load(tmp_path / "teacher")
    same = evaluate(teacher, dataset, reference=teacher, show_progress=False)
    assert same["recall@10_vs_teacher"] == 1.0
    assert same["teacher"] == "fake"
    other = evaluate(Pipeline.load(tmp_path / "small"), dataset, reference=teacher, show_progress=False)
    qids, texts, _ = dataset.split_queries("test")
    teacher_top = numpy_ranking(FakeEncoder(dim=128), dataset, qids, texts, 10)
    small_top = numpy_ranking(FakeEncoder(dim=16), dataset, qids, texts, 10)
    want = knn_recall([small_top[q] for q in qids], [teacher_top[q] for q in qids], 10)
    assert other["recall@10_vs_teacher"] == pytest.approx(want, abs=1e-9)
    assert want < 1.0


def test_run_queries_times_each_stage_and_ranks_like_the_batch_search(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    encoder = SlowEncoder(dim=64)
    pipeline = Pipeline(encoder, load_index_dir(tmp_path / "ix"))
    texts = [f"{topic} {word}" for topic in ("vitamin", "heart", "brain") for word in ("bone", "cells", "memory")]
    ids = [f"q{i}" for i in range(len(texts))]
    run = run_queries(pipeline, texts, ids, 5, show_progress=False)
    assert encoder.calls == [1] * (WARMUP_CALLS + len(texts))  # warm-up, then one query per call
    assert run.query_ids == ids
    assert run.encode_seconds.shape == run.search_seconds.shape == (len(texts),)
    assert run.encode_seconds.min() >= SLEEP_S  # the encoder's own cost is inside the encode time
    assert (run.search_seconds > 0).all()
    np.testing.assert_allclose(run.total_seconds, run.encode_seconds + run.search_seconds)
    np.testing.assert_allclose(run.vectors, FakeEncoder(dim=64).encode(texts), atol=1e-6)
    exact = numpy_ranking(FakeEncoder(dim=64), dataset, ids, texts, 5, clear_top=5)
    assert run.ranked_ids == [exact[q] for q in ids]
    with pytest.raises(ValueError, match="no queries"):
        run_queries(pipeline, [], [], 5, show_progress=False)


def test_evaluate_reports_latency_percentiles_of_the_timed_calls(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    report = evaluate(Pipeline(SlowEncoder(dim=64), load_index_dir(tmp_path / "ix")), dataset, show_progress=False)
    assert report["encode_ms_p50"] >= SLEEP_S * 1e3
    assert report["encode_ms_p50"] <= report["encode_ms_p95"] <= report["encode_ms_p99"]
    assert report["total_ms_p50"] >= report["encode_ms_p50"]
    assert report["search_ms_p50"] < report["encode_ms_p50"]  # a 60-vector Flat search is far below 2 ms


def test_encode_latency_warms_up_then_times_one_query_per_call() -> None:
    encoder = SlowEncoder(dim=16)
    texts = [f"query {i}" for i in range(8)]
    latency = encode_latency_ms(encoder, texts)
    assert encoder.calls == [1] * (WARMUP_CALLS + len(texts))
    assert SLEEP_S * 1e3 <= latency["encode_ms_p50"] <= latency["encode_ms_p95"]


def test_evaluate_refuses_another_corpus(write_beir, tmp_path: Path, beir_dir: Path) -> None:
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    other = load_beir(write_beir(tmp_path / "other", seed=9))
    with pytest.raises(IndexDirError, match="another corpus"):
        evaluate(Pipeline.load(tmp_path / "ix"), other, show_progress=False)
