"""The background evaluation job behind /evaluation: one run at a time, progress while it runs, failures kept until
the next start, and searches and /health answered while it runs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

import search.evaluation.side_by_side
import search.serve.app
from search.evaluation.side_by_side import DatasetUnavailable
from search.serve.app import ServerConfig, create_app
from search.serve.evaluation_job import EvaluationJob
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"


def gated_compute(gate: threading.Event, calls: list[int]):
    def compute(progress) -> dict[str, Any]:
        calls.append(1)
        progress("evaluating", 1, 3)
        assert gate.wait(30)
        return {"pipelines": {"a": {"ndcg@10": 0.5}}}

    return compute


def test_one_run_at_a_time_with_progress_then_the_summary():
    gate, calls = threading.Event(), []
    changes: list[bool] = []
    job = EvaluationJob(gated_compute(gate, calls), on_change=changes.append)
    assert job.state().status == "idle"
    states = [job.start() for _ in range(5)]
    assert {state.status for state in states} == {"running"}
    deadline = time.monotonic() + 10
    while job.state().stage != "evaluating":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert job.state().progress() == {"stage": "evaluating", "done": 1, "total": 3}
    gate.set()
    done = job.wait(10)
    assert done.status == "done"
    assert done.summary == {"pipelines": {"a": {"ndcg@10": 0.5}}}
    assert len(calls) == 1
    assert changes == [True, False]
    assert done.compute_seconds is not None
    assert job.state().status == "done"
    assert len(calls) == 1  # no second run without a start
    job.start()
    assert job.wait(10).status == "done"
    assert len(calls) == 2
    assert job.state().runs == 2


def test_a_failure_is_kept_until_the_next_refresh():
    calls = []

    def failing(progress) -> dict[str, Any]:
        calls.append(1)
        raise DatasetUnavailable("cannot load dataset 'x'")

    job = EvaluationJob(failing)
    job.start()
    state = job.wait(10)
    assert state.status == "failed"
    assert isinstance(state.failure, DatasetUnavailable)
    assert str(state.failure) == "cannot load dataset 'x'"
    assert state.failure.__traceback__ is None
    for _ in range(10):
        assert job.state().status == "failed"
    assert len(calls) == 1
    job.start()
    job.wait(10)
    assert len(calls) == 2


def test_an_unexpected_error_is_reported_not_raised():
    job = EvaluationJob(lambda progress: 1 / 0)
    job.start()
    state = job.wait(10)
    assert state.status == "failed"
    assert isinstance(state.failure, ZeroDivisionError)


def test_failed_summaries_do_not_reload_the_dataset(index_dirs, tmp_path, monkeypatch):
    loads = []
    original = search.evaluation.side_by_side.load_evaluation_dataset

    def counted(*args):
        loads.append(1)
        return original(*args)

    monkeypatch.setattr(search.evaluation.side_by_side, "load_evaluation_dataset", counted)
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    config = ServerConfig(pipelines=sources, evaluation_dataset=str(tmp_path / "nowhere"))
    with TestClient(create_app(config), base_url=LOCAL) as client:
        assert client.post("/evaluation", json={}).status_code == 202
        answers = []
        deadline = time.monotonic() + 30
        while len(answers) < 20:
            response = client.get("/evaluation")
            if response.status_code != 202:
                answers.append((response.status_code, "cannot load dataset" in response.json()["detail"]))
            assert time.monotonic() < deadline
        assert set(answers) == {(404, True)}
        assert len(loads) == 1
        assert client.post("/evaluation", json={}).status_code == 202
        deadline = time.monotonic() + 30
        while client.get("/evaluation").status_code == 202:
            assert time.monotonic() < deadline
        assert len(loads) == 2


def test_searches_and_health_answer_while_the_job_runs(index_dirs, beir_dir, monkeypatch):
    gate = threading.Event()
    original = search.serve.app.evaluate_side_by_side

    calls = []

    def slow(*args):
        calls.append(1)
        assert gate.wait(60)
        return original(*args)

    monkeypatch.setattr(search.serve.app, "evaluate_side_by_side", slow)
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    with TestClient(
        create_app(ServerConfig(pipelines=sources, evaluation_dataset=str(beir_dir))), base_url=LOCAL
    ) as client:
        starts = [client.post("/evaluation", json={}) for _ in range(5)]
        assert {r.status_code for r in starts} == {202}
        assert len({r.json()["started_at"] for r in starts}) == 1
        with ThreadPoolExecutor(16) as pool:
            storm = [pool.submit(client.get, "/evaluation") for _ in range(50)]
            health = [pool.submit(client.get, "/health") for _ in range(20)]
            searches = [pool.submit(client.post, "/search", json={"query": "heart", "k": 3}) for _ in range(20)]
            assert {f.result(timeout=30).status_code for f in health} == {200}
            assert {f.result(timeout=30).status_code for f in searches} == {200}
            assert {f.result(timeout=30).status_code for f in storm} == {202}  # the job is still held at the gate
        assert client.get("/evaluation").json()["status"] == "running"
        assert "semsearch_evaluation_running 1.0" in client.get("/metrics").text
        gate.set()
        deadline = time.monotonic() + 60
        while (response := client.get("/evaluation")).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert response.status_code == 200
        assert set(response.json()["pipelines"]) == {"teacher", "compressed"}
        assert len(calls) == 1  # five POSTs while it ran, one run
