"""The latency study (`benchmarks/latency/latency_study.py`): its spec, query sentences, tiled encoder, thread ring,
the per-stage records of one block (on a tiny ONNX model and the tiny dataset), the summary statistics and, when slow
tests run, the two-process run."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from compression.encoders.onnx import OnnxEncoder
from compression.onnx_export import export_onnx
from latency_study import (
    Bench,
    LatencySpec,
    ThreadRing,
    TiledEncoder,
    before_after,
    corpus_sentences,
    parse_flags,
    parse_threads,
    results_markdown,
    run_latency_bench,
    summarise,
)
from search.data.records import Dataset, Document


@pytest.fixture(scope="module")
def onnx_dir(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_tiny_sentence_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, max_seq_length=64)
    return export_onnx(model, model.parent / "onnx")


def tiny_spec(onnx_dir: Path, beir_dir: Path, **changes) -> LatencySpec:
    options = dict(dataset=str(beir_dir), queries=6, k=20, block=3, pool_threads=3, batch_texts=4, batch_queries=8,
                   pipelines=(1, 2), batch_repeats=1)  # fmt: skip
    return LatencySpec(onnx_dir, **{**options, **changes})


def test_spec_validation_names_the_allowed_values(tmp_path: Path) -> None:
    for changes, message in (
        ({"queries": 0}, "queries must be >= 1"),
        ({"callers": ("main", "web")}, "use main, pool"),
        ({"spinning": (True, True)}, "spinning must list"),
        ({"pipelines": (0,)}, "pipelines must be counts"),
        ({"single_query_threads": (0,)}, ">= 1 or None"),
        ({"factories": ()}, "at least one index factory"),
        ({"batch_texts": -1}, "0 skips it"),
    ):
        with pytest.raises(ValueError, match=message):
            LatencySpec(tmp_path, **changes)
    assert parse_threads("default,1") == (None, 1)
    assert parse_flags("on,off") == (True, False)
    with pytest.raises(ValueError, match="on and/or off"):
        parse_flags("yes")


def test_corpus_sentences_are_query_length_corpus_text_and_seeded() -> None:
    corpus = (
        Document("a", "t", "Short one. This sentence has exactly seven words in it. " + "word " * 40),
        Document(
            "b", "t", "Vitamin D supplements lower the risk of fractures! Too short? Fine, a sentence of six words."
        ),
    )
    dataset = Dataset("mini", corpus)
    picked = corpus_sentences(dataset, 3, seed=0)
    want = {"This sentence has exactly seven words in it.", "Vitamin D supplements lower the risk of fractures!",
            "Fine, a sentence of six words."}  # fmt: skip
    assert set(picked) == want
    assert picked == corpus_sentences(dataset, 3, seed=0)
    with pytest.raises(ValueError, match="fewer than the 4"):
        corpus_sentences(dataset, 4, seed=0)


def test_tiled_encoder_keeps_cosines_and_reports_its_width(onnx_dir: Path) -> None:
    base = OnnxEncoder(onnx_dir, threads=1)
    tiled = TiledEncoder(base, 3)
    texts = ["vitamin d and bones", "tumour cells", "heart failure"]
    vectors, tokenize_seconds = tiled.encode_timed(texts)
    plain = base.encode(texts)
    assert vectors.shape == (3, 3 * base.dim)
    assert tiled.identity()["dim"] == 3 * base.dim
    assert tokenize_seconds > 0
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors @ vectors.T, plain @ plain.T, atol=1e-5)


def test_thread_ring_runs_consecutive_calls_on_different_threads() -> None:
    ring = ThreadRing(3)
    try:
        names = [ring.run(lambda: threading.current_thread().name) for _ in range(6)]
        assert len(set(names[:3])) == 3
        assert names[:3] == names[3:]
        assert threading.current_thread().name not in names
        with pytest.raises(ZeroDivisionError):
            ring.run(lambda: 1 / 0)
    finally:
        ring.close()


def test_one_block_times_every_configuration_and_the_stages_add_up(onnx_dir: Path, beir_dir: Path) -> None:
    spec = tiny_spec(onnx_dir, beir_dir, factories=("Flat", "SQ8"))
    bench = Bench(spec, spinning=False)
    try:
        records = bench.run_block(1)
        batch = bench.run_batch()
    finally:
        bench.ring.close()
    configs = {tuple(r["config"].values()) for r in records}
    assert len(configs) == 2 * 2 * 2 * 2  # factory x faiss threads x pipelines x caller
    assert len(records) == len(configs) * spec.block
    assert {r["query"] for r in records} == {3, 4, 5}
    for r in records:
        parts = r["tokenize"] + r["encode"] + r["search"] + r["hits"]
        assert r["total"] == pytest.approx(parts)
        assert r["encoder"] == pytest.approx(r["tokenize"] + r["encode"])
        assert min(r["tokenize"], r["encode"], r["search"], r["respond"]) > 0
        assert r["wall"] >= r["total"]
    assert batch["encode_s"] > 0
    assert {"search_Flat_faiss-default_s", "search_SQ8_faiss-1_s"} <= set(batch)
    described = bench.describe()
    assert described["allow_spinning_read_back"] == "0"
    assert described["sessions"] == 2
    assert described["docs"] == 60
    wide = Bench(tiny_spec(onnx_dir, beir_dir, dim=2 * described["dim"], factories=("Flat",), callers=("main",)), True)
    try:
        assert wide.describe()["allow_spinning_read_back"] == "1"
        assert wide.indexes["Flat"].d == 2 * described["dim"]
        assert len(wide.run_block(0)) == 2 * 2 * 3
    finally:
        wide.ring.close()


def test_summary_percentiles_and_markdown() -> None:
    config = {"spinning": False, "factory": "Flat", "single_query_threads": 1, "pipelines": 1, "caller": "main"}
    totals = [1.0, 2.0, 3.0, 10.0]
    records = [
        {"config": config, "query": i, "load": 1.5, "tokenize": 0.1, "encode": t - 0.4, "search": 0.2, "hits": 0.1,
         "total": t, "encoder": t - 0.3, "after_encode": 0.3, "respond": 0.2, "wall": t + 0.3}
        for i, t in enumerate(totals)
    ]  # fmt: skip
    (row,) = summarise(records)
    assert row["n"] == 4
    assert row["total_ms_p50"] == pytest.approx(np.percentile(totals, 50))
    assert row["total_ms_p95"] == pytest.approx(np.percentile(totals, 95))
    assert row["total_minus_encoder_ms_p50"] == pytest.approx(0.3)
    assert row["load_mean"] == 1.5
    result = {
        "spec": {"k": 100, "queries": 4},
        "configs": [row],
        "batch": [{"spinning": False, "encode_s": 1.5, "load_mean": 2.0}],
        "machine": {"cpu": "cpu", "cores": 2, "loadavg_start": (1.0, 1.0, 1.0), "loadavg_end": (2.0, 2.0, 2.0)},
    }
    text = results_markdown(result)
    assert "| off | Flat | 1 | 1 | main |" in text
    assert "encode_s" in text
    assert "load average 1.00" in text


def test_before_after_pairs_the_old_defaults_with_the_new() -> None:
    def row(spinning: bool, threads: int | None, total: float) -> dict:
        figures = {"total_ms_p50": total, "total_ms_p95": 2 * total, "after_encode_ms_p50": total / 10}
        return {"factory": "SQ8", "pipelines": 4, "caller": "pool", "spinning": spinning,
                "single_query_threads": threads, "search_ms_p50": total / 20, **figures}  # fmt: skip

    configs = [row(True, None, 40.0), row(True, 1, 30.0), row(False, None, 8.0), row(False, 1, 7.0)]
    (change,) = before_after(configs)
    assert change["old_total_ms_p50"] == 40.0
    assert change["new_total_ms_p50"] == 7.0
    assert change["old_after_encode_ms_p50"] == 4.0
    assert change["new_search_ms_p50"] == 0.35
    assert before_after(configs[1:]) == []  # no old-default row: nothing to compare


@pytest.mark.slow
def test_the_two_processes_take_turns_and_write_results(onnx_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    spec = tiny_spec(onnx_dir, beir_dir, factories=("SQ8",), pipelines=(1,), callers=("main", "pool"))
    result = run_latency_bench(spec, tmp_path / "out", write_records=True)
    assert {p["allow_spinning_read_back"] for p in result["processes"]} == {"0", "1"}
    assert len(result["configs"]) == 2 * 2 * 2
    assert all(row["n"] == spec.queries for row in result["configs"])
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["configs"] == result["configs"]
    assert "records" not in stored
    assert (tmp_path / "out" / "results.md").read_text().count("| SQ8 |") == 8 + 2  # configs, then old -> new
    lines = (tmp_path / "out" / "records.csv").read_text().splitlines()
    assert len(lines) == 1 + 8 * spec.queries
    assert lines[0].startswith("spinning,factory,single_query_threads")
