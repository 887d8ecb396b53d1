"""Coalescing: concurrent single queries share one encoder call and get exactly their uncoalesced hits."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from compression.encoders import FakeEncoder
from search.pipeline import Pipeline
from search.pipeline_set import PipelineSet
from search.serve.admission import Admission, Ticket
from search.serve.app import create_app
from search.serve.batcher import Batchers, Coalesced, PipelineBatcher
from search.serve.config import ServerConfig, ServerLimits
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"
WORDS = "vitamin bone heart artery brain memory tumor cells virus vaccine blood pressure gene mice neurons".split()
QUERIES = [" ".join(WORDS[i % len(WORDS) : i % len(WORDS) + 1 + i % 3]) + f" q{i}" for i in range(20)]
KS = [(1, 5, 10, 30)[i % 4] for i in range(20)]


def pipelines_with_counting_encoders(index_dirs: dict[str, Path]) -> dict[str, Pipeline]:
    """The fixture's pipelines, each with its own FakeEncoder instance (its `calls` list counts encoder calls)."""
    loaded = {name: Pipeline.load(path) for name, path in index_dirs.items()}
    return {name: Pipeline(FakeEncoder(dim=p.encoder.dim), p.stored) for name, p in loaded.items()}


async def coalesce(
    pipelines: dict[str, Pipeline], name: str, queries: list[str], ks: list[int], **limits: float
) -> tuple[list[Coalesced], list[int]]:
    """Submit every query at once to a fresh set of batchers; their answers, and the sizes the batcher observed."""
    settings = ServerLimits(**limits)
    observed: list[int] = []
    batchers = Batchers(pipelines, Admission(settings), settings, observe_batch=lambda _, size: observed.append(size))
    answers: list[Coalesced | None] = [None] * len(queries)

    async def one(i: int) -> None:
        answers[i] = await batchers.search(name, queries[i], ks[i], Ticket(10.0))

    async with anyio.create_task_group() as workers:
        batchers.start(workers)
        async with anyio.create_task_group() as callers:
            for i in range(len(queries)):
                callers.start_soon(one, i)
        workers.cancel_scope.cancel()
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None], observed


def hits_of(hits) -> tuple[list[str], list[float]]:
    """Ids and scores of `Hit`s or of hits as JSON."""
    rows = [(h["id"], h["score"]) if isinstance(h, dict) else (h.id, h.score) for h in hits]
    return [i for i, _ in rows], [s for _, s in rows]


@pytest.mark.parametrize("name", ["teacher", "compressed"])
def test_concurrent_queries_share_one_encoder_call_and_equal_sequential_searches(index_dirs, name, assert_same_ranking):
    pipelines = pipelines_with_counting_encoders(index_dirs)
    answers, observed = anyio.run(lambda: coalesce(pipelines, name, QUERIES, KS, coalesce_max=32))
    # the first finds the pipeline idle and runs at once; the nineteen that arrive meanwhile share one encoder call
    # (the two run in their own threads at once: either may call the encoder first)
    assert sorted(pipelines[name].encoder.calls) == [1, 19]
    assert sorted(observed) == [1, 19]
    assert [answer.batch_size for answer in answers] == [1] + [19] * 19
    sequential = Pipeline(FakeEncoder(dim=pipelines[name].encoder.dim), pipelines[name].stored)
    for query, k, answer in zip(QUERIES, KS, answers, strict=True):
        assert len(answer.result.hits) == k
        # ,RFlat: its own k's candidates
        assert_same_ranking(*hits_of(answer.result.hits), *hits_of(sequential.search(query, k).hits))


def test_batches_are_cut_at_coalesce_max(index_dirs):
    pipelines = pipelines_with_counting_encoders(index_dirs)
    answers, observed = anyio.run(lambda: coalesce(pipelines, "compressed", QUERIES, KS, coalesce_max=8))
    # the first runs alone at once (the pipeline was idle); the 19 queued meanwhile: batches run at once
    assert sorted(observed) == sorted(pipelines["compressed"].encoder.calls) == [1, 3, 8, 8]
    assert [answer.batch_size for answer in answers] == [1] + [8] * 16 + [3] * 3  # taken oldest first


def test_a_lone_query_does_not_wait_unless_asked_to(index_dirs):
    pipelines = pipelines_with_counting_encoders(index_dirs)

    async def two_queries_apart(wait_ms: float) -> list[int]:
        settings = ServerLimits(coalesce_wait_ms=wait_ms)
        batchers = Batchers(pipelines, Admission(settings), settings)
        sizes: dict[str, int] = {}

        async def one(query: str) -> None:
            sizes[query] = (await batchers.search("teacher", query, 3, Ticket(10.0))).batch_size

        async with anyio.create_task_group() as workers:
            batchers.start(workers)
            async with anyio.create_task_group() as callers:
                callers.start_soon(one, "heart")
                await anyio.sleep(0.05)
                callers.start_soon(one, "bone")
            workers.cancel_scope.cancel()
        return [sizes["heart"], sizes["bone"]]

    assert anyio.run(two_queries_apart, 0.0) == [1, 1]  # no wait: the first goes alone
    assert anyio.run(two_queries_apart, 500.0) == [2, 2]  # waits up to 500 ms for company


def test_the_api_coalesces_and_prometheus_shows_the_batch_sizes(index_dirs, beir_dir, assert_same_ranking):
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    app = create_app(ServerConfig(pipelines=sources, evaluation_dataset=str(beir_dir)))
    with TestClient(app, base_url=LOCAL) as client:

        async def concurrent() -> list[dict]:
            bodies: list[dict] = [{}] * len(QUERIES)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as http:

                async def one(i: int) -> None:
                    body = {"query": QUERIES[i], "k": KS[i], "pipeline": "compressed"}
                    response = await http.post("/search", json=body)
                    assert response.status_code == 200, response.text
                    bodies[i] = response.json()

                async with anyio.create_task_group() as callers:
                    for i in range(len(QUERIES)):
                        callers.start_soon(one, i)
            return bodies

        bodies = client.portal.call(concurrent)
        compare = client.post("/compare", json={"query": "heart artery", "k": 5}).json()
        metrics = client.get("/metrics").text
    sequential = PipelineSet.load(sources)
    for query, k, body in zip(QUERIES, KS, bodies, strict=True):
        want = sequential.get("compressed").search(query, k).hits
        assert_same_ranking(*hits_of(body["hits"]), *hits_of(want))
        assert 1 <= body["batch_size"] <= 20
        assert set(body["timings"]) >= {"encode_ms", "total_ms"}
    want_compare = sequential.compare("heart artery", 5)
    for name, comparison in want_compare.pipelines.items():
        assert_same_ranking(*hits_of(compare["pipelines"][name]["hits"]), *hits_of(comparison.hits))
        assert compare["pipelines"][name]["recall@k_vs_teacher"] == comparison.recall_vs_reference
        assert compare["pipelines"][name]["batch_size"] == 1
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    compressed = (("pipeline", "compressed"),)
    assert samples[("semsearch_coalesced_queries_sum", compressed)] == 20 + 1  # the 20 queries and /compare's
    batches = samples[("semsearch_coalesced_queries_count", compressed)]
    assert 2 <= batches <= 11  # /compare's call apart, the 20 concurrent queries took at most 10 encoder calls
    assert samples[("semsearch_coalesced_queries_count", (("pipeline", "teacher"),))] == 1
    assert samples[("semsearch_stage_seconds_count", (*compressed, ("stage", "total")))] == 21  # one per query


class ThreadRecordingEncoder(FakeEncoder):
    """A FakeEncoder that records which thread each encode call ran in."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim=dim)
        self.threads: list[int] = []

    def encode_timed(self, texts, kind="query", batch_size=32):
        self.threads.append(threading.get_ident())
        return super().encode_timed(texts, kind=kind, batch_size=batch_size)


def test_an_idle_pipeline_runs_a_lone_query_at_once_cheap_ones_in_the_event_loop(index_dirs, assert_same_ranking):
    stored = Pipeline.load(index_dirs["compressed"]).stored
    encoder = ThreadRecordingEncoder(dim=stored.index.d)
    pipeline = Pipeline(encoder, stored)

    async def scenario(limits: ServerLimits) -> tuple[list[Coalesced | None], int, PipelineBatcher]:
        admission = Admission(limits)
        batchers = Batchers({"p": pipeline}, admission, limits)
        loop_thread = threading.get_ident()
        answers = [await batchers.search_now("p", f"heart {i}", 3) for i in range(3)]
        return answers, loop_thread, batchers.batchers["p"]

    answers, loop_thread, batcher = anyio.run(scenario, ServerLimits(inline_max_ms=1e6))
    assert all(answer is not None and answer.batch_size == 1 for answer in answers)
    assert batcher.query_ms is not None
    assert batcher.admission.in_flight == 0  # slots given back
    # the first (no timing known yet) ran in a worker thread, the next two (known cheap) in the event loop
    assert encoder.threads[0] != loop_thread
    assert encoder.threads[1:] == [loop_thread, loop_thread]
    for answer, query in zip(answers, ["heart 0", "heart 1", "heart 2"], strict=True):
        assert answer is not None
        want = pipeline.search(query, 3).hits
        assert_same_ranking(*hits_of(answer.result.hits), *hits_of(want))

    encoder.threads.clear()
    answers, loop_thread, _ = anyio.run(scenario, ServerLimits(inline_max_ms=0))
    assert all(answer is not None for answer in answers)
    assert loop_thread not in encoder.threads
    answers, _, _ = anyio.run(scenario, ServerLimits(coalesce_wait_ms=5))  # asked to wait for company: never at once
    assert answers == [None, None, None]


def test_at_once_only_when_the_pipeline_is_idle_and_a_slot_is_free(index_dirs):
    pipelines = pipelines_with_counting_encoders(index_dirs)

    async def scenario() -> list[Coalesced | None]:
        limits = ServerLimits(max_concurrency=1)
        admission = Admission(limits)
        batchers = Batchers(pipelines, admission, limits)
        results = []
        await admission.acquire()  # every slot busy
        results.append(await batchers.search_now("compressed", "heart", 3))
        admission.release()
        batcher = batchers.batchers["compressed"]
        batcher._running = 1  # a batch of this pipeline running
        results.append(await batchers.search_now("compressed", "heart", 3))
        batcher._running = 0
        results.append(await batchers.search_now("compressed", "heart", 3))
        return results

    busy_slots, busy_pipeline, idle = anyio.run(scenario)
    assert busy_slots is None
    assert busy_pipeline is None
    assert idle is not None
    assert idle.batch_size == 1
