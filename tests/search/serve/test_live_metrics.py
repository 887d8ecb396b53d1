"""Live Prometheus metrics: the collectors on their own, then the middleware and the route through the app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from search.pipeline import Timings
from search.serve.app import ServerConfig, create_app
from search.serve.live_metrics import STAGES, ServerMetrics, stage_seconds
from search.sources import PipelineSource


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels (parsed, not string-matched)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_stage_seconds_converts_every_stage():
    timings = Timings(encode_ms=2.0, search_ms=3.0, total_ms=7.5, tokenize_ms=1.0, rescore_ms=0.5)
    assert stage_seconds(timings) == pytest.approx(
        {"tokenize": 0.001, "encode": 0.002, "search": 0.003, "rescore": 0.0005, "total": 0.0075}
    )
    assert tuple(stage_seconds(timings)) == STAGES


def test_observations_and_counts_land_in_their_own_registry():
    metrics = ServerMetrics()
    metrics.observe("p", Timings(encode_ms=2.0, search_ms=3.0, total_ms=6.0, tokenize_ms=1.0))
    metrics.observe("p", Timings(encode_ms=-1.0, search_ms=1.0, total_ms=2.0))  # clock noise: clamped to 0
    metrics.observe_batch("p", Timings(encode_ms=20.0, search_ms=5.0, total_ms=26.0), size=8)
    for status in (200, 422, 422, 503):
        metrics.count("/search", status)
    got = samples(metrics.render().decode())
    assert got[("semsearch_stage_seconds_count", (("pipeline", "p"), ("stage", "encode")))] == 2
    assert got[("semsearch_stage_seconds_sum", (("pipeline", "p"), ("stage", "encode")))] == pytest.approx(0.002)
    assert got[("semsearch_stage_seconds_sum", (("pipeline", "p"), ("stage", "total")))] == pytest.approx(0.008)
    assert got[("semsearch_batch_stage_seconds_sum", (("pipeline", "p"), ("stage", "encode")))] == pytest.approx(0.02)
    assert got[("semsearch_batch_queries_sum", (("pipeline", "p"),))] == 8
    assert got[("semsearch_requests_total", (("route", "/search"),))] == 4
    assert got[("semsearch_errors_total", (("route", "/search"), ("status", "422")))] == 2
    assert got[("semsearch_errors_total", (("route", "/search"), ("status", "503")))] == 1


def test_the_route_counts_requests_errors_and_stage_latencies(index_dirs):
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url="http://127.0.0.1") as client:
        client.post("/search", json={"query": "cancer", "pipeline": "compressed"})
        client.post("/search", json={"query": "", "pipeline": "compressed"})
        client.post("/search/batch", json={"queries": ["a", "b"]})
        client.get("/no/such/route")
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        got = samples(response.text)
    for stage in STAGES:
        assert got[("semsearch_stage_seconds_count", (("pipeline", "compressed"), ("stage", stage)))] == 1
    assert ("semsearch_stage_seconds_bucket", (("le", "0.001"), ("pipeline", "compressed"), ("stage", "total"))) in got
    assert ("semsearch_stage_seconds_count", (("pipeline", "teacher"), ("stage", "total"))) not in got  # batch only
    assert got[("semsearch_batch_queries_sum", (("pipeline", "teacher"),))] == 2
    assert got[("semsearch_requests_total", (("route", "/search"),))] == 2
    assert got[("semsearch_errors_total", (("route", "/search"), ("status", "422")))] == 1
    assert got[("semsearch_errors_total", (("route", "unmatched"), ("status", "404")))] == 1
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url="http://127.0.0.1") as fresh:  # own registry
        got = samples(fresh.get("/metrics").text)
    assert not any(name == "semsearch_stage_seconds_count" for name, _ in got)
    assert ("semsearch_requests_total", (("route", "/search"),)) not in got
