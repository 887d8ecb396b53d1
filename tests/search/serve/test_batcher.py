"""Coalescing: concurrent single queries share one encoder call and get exactly their uncoalesced hits."""

from __future__ import annotations

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
from search.serve.batcher import Batchers, Coalesced
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
    assert pipelines[name].encoder.calls == [20] and observed == [20]  # one encoder call for the twenty
    assert {answer.batch_size for answer in answers} == {20}
    sequential = Pipeline(FakeEncoder(dim=pipelines[name].encoder.dim), pipelines[name].stored)
    for query, k, answer in zip(QUERIES, KS, answers, strict=True):
        assert len(answer.result.hits) == k
        # ,RFlat: its own k's candidates
        assert_same_ranking(*hits_of(answer.result.hits), *hits_of(sequential.search(query, k).hits))


def test_batches_are_cut_at_coalesce_max(index_dirs):
    pipelines = pipelines_with_counting_encoders(index_dirs)
    answers, observed = anyio.run(lambda: coalesce(pipelines, "compressed", QUERIES, KS, coalesce_max=8))
    assert sorted(observed) == sorted(pipelines["compressed"].encoder.calls) == [4, 8, 8]  # batches run at once
    assert [answer.batch_size for answer in answers] == [8] * 16 + [4] * 4  # taken oldest first


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
    app = create_app(ServerConfig(pipelines=sources, metrics_dataset=str(beir_dir)))
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
        assert 1 <= body["batch_size"] <= 20 and set(body["timings"]) >= {"encode_ms", "total_ms"}
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
