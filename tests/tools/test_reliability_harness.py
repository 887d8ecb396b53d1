"""The reliability harness (`benchmarks/reliability/reliability_harness/`): its summary maths, HTTP reader, RSS
sampler, report, restart rule, and a short run against a real server on loopback (FakeEncoder pipelines); when slow
tests run, the real CLI server started, restarted and stopped."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from reliability_harness.ab import ab_table, run_ab
from reliability_harness.hostile import CASES, HostileCase, run_hostile
from reliability_harness.latency import KeepAliveClient, run_latency
from reliability_harness.load import read_response, run_load, summarize
from reliability_harness.report import compare_tables, tables, write_report
from reliability_harness.rss import sample_rss
from reliability_harness.schema import summarize_output
from reliability_harness.server import ServerProcess, ServerSpec, parse_pipelines
from reliability_harness.storm import run_storm
from search.data.datasets import load_beir
from search.pipeline import build_index_dir
from search.serve.app import ServerConfig, create_app
from search.sources import PipelineSource


def test_summary_counts_errors_and_takes_percentiles_of_every_answer():
    latencies = np.linspace(0.001, 0.1, 100)
    statuses = [200] * 95 + [503] * 3 + [0, 422]
    result = summarize("p", 4, 2.0, latencies, statuses)
    assert result.requests == 100
    assert result.ok == 95
    assert result.errors == 5
    assert result.busy == 3
    assert result.req_per_s == pytest.approx(47.5)  # answered 200 only, over the measured seconds
    # numpy's linear interpolation, by hand: rank 0.99 * 99 = 98.01 between the 99th and 100th of 1..100 ms
    assert result.p99_ms == pytest.approx(99.0 + 0.01 * 1.0)
    assert result.p50_ms == pytest.approx(50.5)
    assert result.max_ms == pytest.approx(100.0)


def test_summary_of_no_answers_is_zero_not_an_error():
    result = summarize("p", 1, 0.0, [], [])
    assert (result.requests, result.req_per_s, result.p99_ms) == (0, 0.0, 0.0)


def _read(raw: bytes) -> tuple[tuple[int, bool], bytes]:
    async def go() -> tuple[tuple[int, bool], bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        answer = await read_response(reader)
        return answer, await reader.read()

    return asyncio.run(go())


def test_http_reader_takes_exactly_one_answer_by_length_or_chunks():
    plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 204"
    assert _read(plain) == ((200, True), b"HTTP/1.1 204")
    chunked = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT"
    assert _read(chunked) == ((503, False), b"NEXT")
    with pytest.raises(ConnectionResetError):
        _read(b"")


def test_rss_sampler_sees_memory_grow():
    with sample_rss(os.getpid(), every_s=0.01) as trace:
        block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
        time.sleep(0.05)
        assert block.sum() == 64 << 20
    assert trace.peak_mb - trace.start_mb > 40
    assert len(trace.samples) >= 3
    assert trace.as_dict()["rss_growth_mb"] == pytest.approx(trace.peak_mb - trace.start_mb, abs=0.1)


class FakeTarget:
    """A server stand-in for the restart rule: this process's RSS, a scripted /health."""

    def __init__(self, healthy: bool) -> None:
        self.pid, self._healthy, self.restarts = os.getpid(), healthy, 0

    def healthy(self, timeout_s: float = 2.0) -> bool:
        return self._healthy

    def restart(self) -> float:
        self.restarts += 1
        self._healthy = True
        return 0.0


def test_a_case_without_an_answer_restarts_the_server():
    with socket.socket() as probe:  # a port nobody listens on: the request fails at once
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    case = HostileCase("x", (422,), lambda pipeline: b"{}", path="/search")
    target = FakeTarget(healthy=True)
    [row] = run_hostile(dead, target, "teacher", timeout_s=2, cases=(case,))
    assert row["status"] == "failed: ConnectError"
    assert not row["ok"]
    assert row["restarted"]
    assert target.restarts == 1


def test_schemathesis_summary_counts_failures():
    out = (
        "stuff\n=== SUMMARY ===\nTest cases:\n  147 generated, 143 passed, 4 failed\n===== 4 failures in 2.82s =====\n"
    )
    result = summarize_output(out)
    assert result["failures"] == 4
    assert result["errors"] == 0
    assert result["summary"][-1] == "4 failures in 2.82s"
    assert summarize_output("... 4 failures, 1 error in 42.89s ===")["errors"] == 1
    assert summarize_output("252 generated, 252 passed\n=== No issues found in 28.88s ===")["failures"] == 0


def test_server_spec_runs_the_cli_of_the_chosen_tree(tmp_path):
    spec = ServerSpec(src=tmp_path, pipelines=(("teacher", tmp_path / "t"),), port=8123, python="py")
    assert spec.command()[:3] == ["py", "-c", "from search.cli import app; app()"]
    assert spec.command()[3:] == ["serve", "--pipeline", f"teacher={tmp_path / 't'}", "--host", "127.0.0.1", "--port",
                                  "8123"]  # fmt: skip
    with pytest.raises(ValueError, match="TCP port"):
        ServerSpec(src=tmp_path, pipelines=(("t", tmp_path),), port=0)
    with pytest.raises(ValueError, match="is missing"):
        parse_pipelines([f"teacher={tmp_path / 'nowhere'}"])
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_pipelines(["teacher"])


def _index_dirs(tmp_path: Path, beir_dir: Path) -> tuple[Path, Path]:
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), tmp_path / "teacher", show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), tmp_path / "small", show_progress=False)
    return tmp_path / "teacher", tmp_path / "small"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class InThread:
    """The app in a uvicorn thread of this process (a `hostile.Target` that cannot restart)."""

    def __init__(self, base_url: str) -> None:
        self.pid, self.base_url = os.getpid(), base_url

    def healthy(self, timeout_s: float = 2.0) -> bool:
        return httpx.get(f"{self.base_url}/health", timeout=timeout_s).status_code == 200

    def restart(self) -> float:
        raise AssertionError("a hostile case wedged the server")


@pytest.fixture
def server(tmp_path: Path, beir_dir: Path) -> Iterator[InThread]:
    """`semsearch serve`'s app over two fake-encoder pipelines, on a free loopback port, in a thread."""
    teacher, small = _index_dirs(tmp_path, beir_dir)
    sources = (PipelineSource("teacher", teacher), PipelineSource("compressed", small))
    port = _free_port()
    app = create_app(ServerConfig(pipelines=sources, evaluation_dataset=str(beir_dir)))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield InThread(f"http://127.0.0.1:{port}")
    uv.should_exit = True
    thread.join(10)


def test_the_latency_phase_sets_each_answer_against_the_same_pipeline_in_process(server, tmp_path):
    port = int(server.base_url.rsplit(":", 1)[1])
    pipelines = [("teacher", tmp_path / "teacher"), ("compressed", tmp_path / "small")]
    queries = ["heart attack", "vitamin d", "bone density", "gene expression"]
    latency = run_latency("127.0.0.1", port, pipelines, queries, threads=1, per_round=4, rounds=2, warmup=2)
    assert [row["pipeline"] for row in latency["pipelines"]] == ["teacher", "compressed"]
    for row in latency["pipelines"]:
        assert row["requests"] == 8
        # every answer's client time holds the server's own work, so the medians keep that order
        assert row["client_ms"]["p50"] >= row["server_total_ms"]["p50"] > 0
        assert row["inprocess_total_ms"]["p50"] > 0
        assert row["overhead_ms"] == round(row["client_ms"]["p50"] - row["inprocess_total_ms"]["p50"], 3)
    assert latency["health_client_ms"]["p50"] > 0
    client = KeepAliveClient("127.0.0.1", port)  # two answers on one connection, framed by their lengths
    raw = client.prepare("POST", "/search", json.dumps({"query": "heart", "k": 2}).encode())
    answers = [client.request(raw) for _ in range(2)]
    client.close()
    assert [status for status, _ in answers] == [200, 200]
    assert all(len(json.loads(body)["hits"]) == 2 for _, body in answers)


def test_a_short_run_against_a_real_server(server, tmp_path):
    base_url = server.base_url
    level = run_load(base_url, "compressed", 4, 0.5, ["heart attack", "vitamin d"], warmup_s=0.1)
    assert level.ok > 0
    assert level.errors == 0
    assert level.p50_ms <= level.p99_ms
    hostile = run_hostile(base_url, server, "teacher", timeout_s=15)
    assert [h["case"] for h in hostile] == [case.name for case in CASES]
    wrong = [(h["case"], h["status"]) for h in hostile if h["status"] not in h["expected"]]
    assert wrong == []
    assert not any(h["restarted"] for h in hostile)
    storm = run_storm(base_url, calls=10, timeout_s=60)
    assert set(storm["metrics_statuses"]) <= {"200", "202"}
    assert storm["health_statuses"] == {"200": storm["health_polls"]}
    assert storm["evaluation_seconds"] > 0
    results = {
        "label": "t", "machine": {}, "duration_s": 0.5, "load": [{**level.as_dict(), "rss_start_mb": 1.0,
        "rss_peak_mb": 2.0, "rss_end_mb": 1.0}], "hostile": hostile, "storm": storm,
    }  # fmt: skip
    text = write_report(results, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["label"] == "t"
    assert "| compressed | 4 |" in text
    assert text == tables(results)
    refused = sum(1 for h in hostile if h["ok"])
    assert f"- hostile: {refused}/{len(CASES)} refused correctly" in text


def test_compare_puts_the_same_row_of_both_runs_side_by_side():
    row = {"pipeline": "teacher", "clients": 8, "req_per_s": 10.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
           "rss_start_mb": 1.0, "rss_peak_mb": 2.0, "rss_end_mb": 1.0}  # fmt: skip
    case = {"case": "k = NaN", "status": 500, "seconds": 0.02, "rss_growth_mb": 90.0}
    before = {"label": "before", "load": [row], "hostile": [case]}
    after = {"label": "after", "load": [{**row, "req_per_s": 20.0}], "hostile": [{**case, "status": 422}]}
    text = compare_tables(before, after)
    assert "| teacher | 8 | 10.0 | 20.0 |" in text
    assert "| k = NaN | 500 | 0.020 | 90.0 | 422 | 0.020 | 90.0 |" in text


@pytest.mark.slow
def test_server_process_starts_restarts_and_stops_a_real_cli_server(tmp_path, beir_dir):
    teacher, small = _index_dirs(tmp_path, beir_dir)
    root = Path(__file__).resolve().parents[2]
    spec = ServerSpec(src=root, pipelines=(("teacher", teacher), ("compressed", small)), port=_free_port(),
                      python=sys.executable, log_path=tmp_path / "server.log")  # fmt: skip
    with ServerProcess(spec) as server:
        first = server.pid
        assert server.healthy()
        server.restart()
        assert server.pid != first
        assert server.healthy()
        assert server.starts == 2
    assert not ServerProcess(spec).healthy(0.5)


def test_the_ab_table_sets_both_servers_side_by_side_per_pipeline_and_level():
    def level(label: str, rate: float) -> dict:
        return {"pipeline": "p", "label": label, "clients": 32, "req_per_s": rate, "p50_ms": rate / 10, "p99_ms": rate}

    results = {
        "labels": ["old", "new"],
        "rows": [
            {"pipeline": "p", "label": "old", "clients": 0, "latency_ms": [3.0, 1.0, 2.0]},
            {"pipeline": "p", "label": "new", "clients": 0, "latency_ms": [1.0, 1.0, 0.5]},
            level("old", 100.0), level("new", 150.0), level("new", 170.0), level("old", 120.0),
        ],
    }  # fmt: skip
    lines = ab_table(results).splitlines()
    assert lines[2] == "| p | 1 (one connection, raw socket) | - | 2.00 / 2.00 | - | 1.00 / 1.00 |"
    assert lines[3] == "| p | 32 | 110.0 (100.0, 120.0) | 11.0 / 110.0 | 160.0 (150.0, 170.0) | 16.0 / 160.0 |"
    with pytest.raises(ValueError, match="needs two servers"):
        run_ab({}, ["q"], [1], 1.0, 0.0)
