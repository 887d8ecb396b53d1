"""Bounded work: size caps refused before any encoding, a full queue refused at once (503 + Retry-After), deadlines
(504), work stopped when the client leaves, waiting without threads, and the queue in /metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from compression.encoders import FakeEncoder
from search.serve.admission import (
    CLIENT_GONE,
    Admission,
    ClientGone,
    DeadlineExceeded,
    LimitExceeded,
    ServerBusy,
    Ticket,
    check_shape,
    check_tokens,
    watched,
)
from search.serve.app import create_app
from search.serve.config import ServerConfig, ServerLimits
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"


class Gate:
    """Replaces FakeEncoder.encode_timed: records each call's size; can block every call until `release` is set,
    or sleep `sleep_s` per call (a slow model)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, block: bool = False, sleep_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        original = FakeEncoder.encode_timed

        def encode_timed(encoder, texts, kind="query", batch_size=32):
            self.calls.append(len(texts))
            self.entered.set()
            if block:
                self.release.wait(10)
            time.sleep(sleep_s)
            return original(encoder, texts, kind, batch_size)

        monkeypatch.setattr(FakeEncoder, "encode_timed", encode_timed)


def make_app(index_dirs: dict[str, Path], **limits: Any) -> FastAPI:
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    return create_app(ServerConfig(pipelines=sources, limits=ServerLimits(**limits)))


def in_loop(client: TestClient, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run `scenario(http)` in the app's event loop (where its lifespan runs), with an async client on the app."""

    async def run() -> Any:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL, timeout=30) as http:
            return await scenario(http)

    return client.portal.call(run)


async def prometheus(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    with anyio.fail_after(timeout_s):
        while not await condition():
            await anyio.sleep(0.01)


# --- the checks on their own ------------------------------------------------------------------------------------


class Shape:
    def __init__(self, k_factor: float | None = None, tokens_each: int = 3, max_seq_length: int = 5) -> None:
        self.k_factor, self.tokens_each, self.counted = k_factor, tokens_each, 0
        self.max_seq_length = max_seq_length

    def most_tokens(self, queries: int) -> int:
        return queries * self.max_seq_length

    def rescore_candidates(self, k: int, oversample: float | None = None) -> int:
        factor = oversample if oversample is not None else self.k_factor
        return 0 if factor is None else max(k, int(k * factor))

    def count_tokens(self, queries):
        self.counted += 1
        return [self.tokens_each] * len(queries)


def test_shape_and_token_caps_name_the_limit_and_the_value():
    limits = ServerLimits(max_batch_hits=100, max_rescore_candidates=300, max_batch_tokens=10)
    check_shape(Shape(), 10, 10, limits)
    with pytest.raises(LimitExceeded, match=r"11 queries x k=10 = 110 hits is over max_batch_hits=100") as err:
        check_shape(Shape(), 11, 10, limits)
    assert err.value.field == "k"
    check_shape(Shape(k_factor=3.0), 10, 10, limits)  # 300 candidates: at the limit
    with pytest.raises(LimitExceeded, match=r"= 320 candidates .* over max_rescore_candidates=300"):
        check_shape(Shape(k_factor=4.0), 8, 10, limits)
    counted = Shape()
    check_tokens(counted, ["a", "b", "c"], limits)  # up to 15 tokens: counted, 9 pass
    assert counted.counted == 1
    with pytest.raises(LimitExceeded, match=r"4 queries hold 12 tokens .* max_batch_tokens=10") as err:
        check_tokens(Shape(), ["a"] * 4, limits)
    assert err.value.field == "queries"
    short = Shape(max_seq_length=2)
    check_tokens(short, ["a"] * 5, limits)  # 5 queries of at most 2 tokens cannot pass 10: nothing tokenised
    assert short.counted == 0
    with pytest.raises(LimitExceeded, match=r"6 queries hold 12 tokens"):
        check_tokens(Shape(tokens_each=2, max_seq_length=2), ["a"] * 6, limits)


def test_a_ticket_stops_work_on_its_deadline_or_when_the_client_goes():
    now = [100.0]
    ticket = Ticket(2.0, clock=lambda: now[0])
    ticket.check()
    assert ticket.remaining() == 2.0
    assert not ticket.stopped
    now[0] = 102.5
    with pytest.raises(DeadlineExceeded, match="deadline of 2 s"):
        ticket.check()
    gone = Ticket(60.0)
    gone.cancel(CLIENT_GONE)
    with pytest.raises(ClientGone):
        gone.check()


def test_admission_refuses_past_the_queue_and_waits_for_slots_until_the_deadline():
    async def scenario() -> None:
        admission = Admission(ServerLimits(max_concurrency=1, max_queue=2, retry_after_s=3))
        holding = anyio.Event()
        release = anyio.Event()

        async def hold() -> None:
            async with admission.request(Ticket(10.0)):
                holding.set()
                await release.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            await holding.wait()
            assert (admission.queued, admission.in_flight) == (0, 1)
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):  # waits for the slot, 0.1 s at most
                async with admission.request(Ticket(0.1)):
                    pass
            assert 0.05 < time.monotonic() - started < 2.0
            assert admission.queued == 0
            admission.admit(2)  # two waiting: the queue is full
            with pytest.raises(ServerBusy, match="max_queue=2") as err:
                admission.admit()
            assert err.value.retry_after_s == 3
            admission.abandon(2)
            release.set()
        assert (admission.queued, admission.in_flight) == (0, 0)

    anyio.run(scenario)


def test_watched_returns_raises_and_stops_on_a_disconnect():
    class Leaves:
        def __init__(self, after_polls: int) -> None:
            self.polls, self.after = 0, after_polls

        async def is_disconnected(self) -> bool:
            self.polls += 1
            return self.polls > self.after

    async def scenario() -> None:
        async def answer() -> int:
            return 42

        assert await watched(Ticket(5.0), answer, Leaves(100)) == 42

        async def fails() -> int:
            raise LimitExceeded("k", "too much")

        with pytest.raises(LimitExceeded):  # raised as itself, not in an ExceptionGroup
            await watched(Ticket(5.0), fails, Leaves(100))

        steps: list[int] = []
        ticket = Ticket(5.0)

        def slow_work() -> None:  # a worker thread with a checkpoint between steps of 20 ms
            for step in range(50):
                ticket.check()
                steps.append(step)
                time.sleep(0.02)

        with pytest.raises(ClientGone):
            await watched(ticket, lambda: anyio.to_thread.run_sync(slow_work), Leaves(2), poll_s=0.01)
        assert 0 < len(steps) < 50  # stopped at a checkpoint soon after the client left

    anyio.run(scenario)


# --- through the app ------------------------------------------------------------------------------------------


def test_caps_are_refused_before_any_encoding(index_dirs, monkeypatch):
    gate = Gate(monkeypatch)
    app = make_app(index_dirs, max_batch_hits=50, max_rescore_candidates=50, max_batch_tokens=10)
    with TestClient(app, base_url=LOCAL) as client:
        refused = {
            "hits": client.post("/search/batch", json={"queries": ["a"] * 6, "k": 10}),
            "rescore": client.post("/search", json={"query": "bone", "k": 30, "pipeline": "compressed"}),
            "compare": client.post("/compare", json={"query": "bone", "k": 30}),
            "tokens": client.post("/search/batch", json={"queries": ["heart artery wall risk"] * 3, "k": 3}),
            "one query's tokens": client.post("/search", json={"query": " ".join(["bone"] * 11), "k": 3}),
        }
        assert gate.calls == []  # no encoder call for any of them
        assert client.post("/search", json={"query": "bone", "k": 30, "pipeline": "teacher"}).status_code == 200
    messages = {name: response.json()["detail"][0] for name, response in refused.items()}
    assert all(response.status_code == 422 for response in refused.values())
    assert "6 queries x k=10 = 60 hits is over max_batch_hits=50" in messages["hits"]["msg"]
    assert messages["hits"]["loc"] == ["body", "k"]
    # k=30 x k_factor 4, cut to the 60 documents there are
    assert "60 candidates to re-rank is over max_rescore_candidates=50" in messages["rescore"]["msg"]
    assert "max_rescore_candidates=50" in messages["compare"]["msg"]
    assert "3 queries hold 12 tokens" in messages["tokens"]["msg"]
    assert messages["tokens"]["loc"] == ["body", "queries"]
    assert "the query holds 11 tokens" in messages["one query's tokens"]["msg"]
    assert "max_batch_tokens=10" in messages["one query's tokens"]["msg"]


def test_a_full_queue_is_answered_503_with_retry_after_at_once(index_dirs, monkeypatch):
    gate = Gate(monkeypatch, block=True)
    app = make_app(index_dirs, max_concurrency=1, max_queue=2, retry_after_s=7)

    async def scenario(http: httpx.AsyncClient) -> dict[str, Any]:
        got: dict[str, Any] = {}

        async def post(key: str, path: str, body: dict) -> None:
            got[key] = await http.post(path, json=body)

        async def depth() -> float:
            return (await prometheus(http))["semsearch_queue_depth"]

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(post, "running", "/search", {"query": "heart", "pipeline": "compressed"})
                await until(lambda: anyio.to_thread.run_sync(gate.entered.is_set))
                group.start_soon(post, "queued single", "/search", {"query": "bone", "pipeline": "compressed"})
                group.start_soon(post, "queued batch", "/search/batch", {"queries": ["a", "b"]})
                await until(lambda: _equals(depth, 2.0))
                got["during"] = await prometheus(http)
                got["borrowed threads"] = anyio.to_thread.current_default_thread_limiter().borrowed_tokens
                started = time.monotonic()
                got["refused"] = await http.post("/search", json={"query": "cells"})
                got["refused batch"] = await http.post("/search/batch", json={"queries": ["cells"]})
                got["refused seconds"] = time.monotonic() - started
                gate.release.set()
        finally:
            gate.release.set()
        got["after"] = await prometheus(http)
        return got

    with TestClient(app, base_url=LOCAL) as client:
        got = in_loop(client, scenario)
    for key in ("refused", "refused batch"):
        assert got[key].status_code == 503
        assert got[key].headers["retry-after"] == "7"
        assert "max_queue=2" in got[key].json()["detail"]
    assert got["refused seconds"] < 2.0  # refused at once, not after waiting
    assert [got[key].status_code for key in ("running", "queued single", "queued batch")] == [200, 200, 200]
    assert got["during"]["semsearch_in_flight"] == 1
    assert got["during"]["semsearch_queue_depth"] == 2
    assert got["borrowed threads"] == 1  # only the running batch holds a worker thread; the queued hold none
    assert got["after"]["semsearch_rejected_total"] == 2
    assert got["after"]["semsearch_queue_depth"] == 0
    assert got["after"]["semsearch_in_flight"] == 0


async def _equals(read: Callable[[], Awaitable[float]], value: float) -> bool:
    return await read() == value


def test_requests_past_their_deadline_get_504(index_dirs, monkeypatch):
    gate = Gate(monkeypatch, block=True)
    app = make_app(index_dirs, max_concurrency=1, request_timeout_s=0.3)

    async def scenario(http: httpx.AsyncClient) -> dict[str, Any]:
        got: dict[str, Any] = {}

        async def post(key: str, path: str, body: dict) -> None:
            got[key] = await http.post(path, json=body)

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(post, "running", "/search/batch", {"queries": ["heart"]})
                await until(lambda: anyio.to_thread.run_sync(gate.entered.is_set))
                started = time.monotonic()
                async with anyio.create_task_group() as waiting:
                    waiting.start_soon(post, "queued single", "/search", {"query": "bone"})
                    waiting.start_soon(post, "queued batch", "/search/batch", {"queries": ["bone"]})
                    waiting.start_soon(post, "queued compare", "/compare", {"query": "bone"})
                got["waited"] = time.monotonic() - started
                gate.release.set()
        finally:
            gate.release.set()
        got["after"] = await prometheus(http)
        return got

    with TestClient(app, base_url=LOCAL) as client:
        got = in_loop(client, scenario)
    for key in ("queued single", "queued batch", "queued compare"):
        assert got[key].status_code == 504, key
        assert "deadline of 0.3 s (request_timeout_s)" in got[key].json()["detail"]
    assert 0.25 < got["waited"] < 3.0
    assert got["running"].status_code == 200  # its only micro-batch finished: the answer is kept
    assert got["after"]["semsearch_timed_out_total"] == 3
    assert gate.calls == [1]  # the queued requests never reached the encoder


def test_a_batch_past_its_deadline_stops_at_the_next_micro_batch(index_dirs, monkeypatch):
    gate = Gate(monkeypatch, sleep_s=0.15)
    app = make_app(index_dirs, micro_batch=1, request_timeout_s=0.4)
    with TestClient(app, base_url=LOCAL) as client:
        response = client.post("/search/batch", json={"queries": ["a", "b", "c", "d", "e", "f", "g", "h"]})
        calls = len(gate.calls)
        time.sleep(0.4)
    assert response.status_code == 504
    assert 2 <= calls <= 4
    assert len(gate.calls) == calls  # stopped, and nothing ran after the answer


def test_work_stops_when_the_client_disconnects(index_dirs, monkeypatch):
    gate = Gate(monkeypatch, sleep_s=0.1)
    app = make_app(index_dirs, micro_batch=1)
    body = json.dumps({"queries": [f"query {i}" for i in range(10)]}).encode()

    async def call_and_leave(leave_after_s: float) -> list[dict]:
        """POST /search/batch over raw ASGI; the client disconnects `leave_after_s` after sending its body."""
        leave_at = time.monotonic() + leave_after_s
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            if time.monotonic() >= leave_at:
                return {"type": "http.disconnect"}
            await anyio.sleep_forever()  # nothing to receive yet (a poll cancels this)
            raise AssertionError("unreachable")

        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/search/batch",
            "raw_path": b"/search/batch",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        return messages

    with TestClient(app, base_url=LOCAL) as client:
        messages = client.portal.call(call_and_leave, 0.25)
        calls = len(gate.calls)
        time.sleep(0.3)
    assert messages[0]["type"] == "http.response.start"
    assert messages[0]["status"] == 499
    # 10 micro-batches asked for: some ran (at least one, more on an idle machine), the rest never did
    assert 1 <= calls <= 5
    assert len(gate.calls) == calls


def test_pipelines_shows_the_thread_budget(index_dirs):
    with TestClient(make_app(index_dirs, max_concurrency=2), base_url=LOCAL) as client:
        body = client.get("/pipelines").json()
        pool = client.portal.call(_pool_size)
    threads = body["threads"]
    assert set(threads) == {"cores", "encoder", "search", "single_query", "request_pool"}
    assert threads["request_pool"] == 2 + 4 == pool  # two slots of model work, and the headroom
    assert threads["search"] == max(1, threads["cores"] // 2)
    assert body["limits"]["max_concurrency"] == 2
    assert body["pipelines"]["compressed"]["batch_search_threads"] == threads["search"]


async def _pool_size() -> float:
    return anyio.to_thread.current_default_thread_limiter().total_tokens
