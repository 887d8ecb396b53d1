"""The reliability harness: its summary maths, its RSS sampler, and a short run against a real server on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.bench.reliability.hostile import CASES, run_hostile
from search.bench.reliability.load import run_load, summarize
from search.bench.reliability.report import compare_tables, tables, write_report
from search.bench.reliability.rss import sample_rss
from search.bench.reliability.storm import run_storm
from search.data.datasets import load_beir
from search.pipeline import build_index_dir
from search.serve.app import ServerConfig, create_app
from search.serve.pipelines import PipelineSource


def test_summary_counts_errors_and_takes_percentiles_of_every_answer():
    latencies = np.linspace(0.001, 0.1, 100)
    statuses = [200] * 95 + [503] * 3 + [0, 422]
    result = summarize("p", 4, 2.0, latencies, statuses)
    assert result.requests == 100 and result.ok == 95 and result.errors == 5 and result.busy == 3
    assert result.req_per_s == pytest.approx(47.5)
    assert result.p50_ms == pytest.approx(np.percentile(latencies * 1e3, 50))
    assert result.p99_ms == pytest.approx(np.percentile(latencies * 1e3, 99)) and result.max_ms == pytest.approx(100)


def test_rss_sampler_sees_memory_grow():
    with sample_rss(os.getpid(), every_s=0.01) as trace:
        block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        assert block.sum() == 64 << 20
    assert trace.peak_mb - trace.start_mb > 40 and len(trace.samples) >= 3


@pytest.fixture
def server(tmp_path: Path, beir_dir: Path) -> Iterator[tuple[int, str]]:
    """`semsearch serve`'s app over two fake-encoder pipelines, on a free loopback port, in a thread."""
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), tmp_path / "teacher", show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), tmp_path / "small", show_progress=False)
    sources = (PipelineSource("teacher", tmp_path / "teacher"), PipelineSource("compressed", tmp_path / "small"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(ServerConfig(pipelines=sources, metrics_dataset=str(beir_dir)))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield port, f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)


def test_a_short_run_against_a_real_server(server, tmp_path):
    port, base_url = server
    level = run_load(base_url, "compressed", 4, 0.5, ["heart attack", "vitamin d"], warmup_s=0.1)
    assert level.ok > 0 and level.errors == 0 and level.p50_ms <= level.p99_ms
    hostile = run_hostile(base_url, os.getpid(), "teacher", timeout_s=15)
    assert [h["case"] for h in hostile] == [case.name for case in CASES]
    wrong = [(h["case"], h["status"]) for h in hostile if h["status"] not in h["expected"]]
    assert wrong == []
    storm = run_storm(base_url, calls=10, timeout_s=60)
    assert set(storm["metrics_statuses"]) <= {"200", "202"} and storm["health_statuses"] == {
        "200": storm["health_polls"]
    }
    assert storm["evaluation_seconds"] > 0
    results = {
        "label": "t", "machine": {}, "duration_s": 0.5, "load": [{**level.as_dict(), "rss_start_mb": 1.0,
        "rss_peak_mb": 2.0, "rss_end_mb": 1.0}], "hostile": hostile, "storm": storm,
    }  # fmt: skip
    text = write_report(results, tmp_path / "out")
    assert (tmp_path / "out" / "results.json").exists() and "| compressed | 4 |" in text and text == tables(results)
    compared = compare_tables({**results, "label": "before"}, results)
    assert "before req/s" in compared and "t req/s" in compared
