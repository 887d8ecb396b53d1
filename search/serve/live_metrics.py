"""Live request metrics in Prometheus text format, on a per-app registry (so apps and tests never collide).

- `semsearch_stage_seconds{pipeline, stage}`: per-query stage latency of `/search` and `/compare`
  (stage: tokenize, encode, search, rescore, total).
- `semsearch_batch_stage_seconds{pipeline, stage}` and `semsearch_batch_queries{pipeline}`: the same per batch of
  `/search/batch`, kept apart so batches do not skew the per-query histogram.
- `semsearch_requests_total{route}` and `semsearch_errors_total{route, status}`: every HTTP response, errors being
  status >= 400 (422s included); unknown paths count under route "unmatched".
- `semsearch_queue_depth` and `semsearch_in_flight`: requests waiting for work and requests whose work runs (read
  from the server's `Admission` when scraped); `semsearch_rejected_total` (503, queue full) and
  `semsearch_timed_out_total` (504, deadline passed).
- `semsearch_coalesced_queries{pipeline}`: single queries (/search, /compare) encoded together per encoder call.
- `semsearch_evaluation_running`: 1 while the `/evaluation` job runs.

`GET /metrics` renders the registry (`prometheus_client`'s text exposition, negotiated from the Accept header).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.pipeline import Timings

STAGES = ("tokenize", "encode", "search", "rescore", "total")
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
COALESCED_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
UNMATCHED = "unmatched"


def stage_seconds(timings: Timings) -> dict[str, float]:
    """Each stage's duration in seconds (Prometheus' unit), from the `{stage}_ms` fields of `timings`."""
    return {stage: getattr(timings, f"{stage}_ms") / 1e3 for stage in STAGES}


class ServerMetrics:
    """The app's Prometheus collectors; `observe*` are called by the pipeline set, `count` by the middleware."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._stage_children: dict[str, dict[str, Histogram]] = {}
        self.stage = Histogram(
            "semsearch_stage_seconds",
            "Per-query latency of each stage of /search and /compare",
            ("pipeline", "stage"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_stage = Histogram(
            "semsearch_batch_stage_seconds",
            "Latency of each stage of a whole /search/batch request",
            ("pipeline", "stage"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_queries = Histogram(
            "semsearch_batch_queries",
            "Queries per /search/batch request",
            ("pipeline",),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "semsearch_requests", "HTTP requests answered, per route", ("route",), registry=self.registry
        )
        self.errors = Counter(
            "semsearch_errors",
            "HTTP responses with status >= 400, per route",
            ("route", "status"),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "semsearch_queue_depth", "Requests admitted and waiting for their work to start", registry=self.registry
        )
        self.in_flight = Gauge("semsearch_in_flight", "Requests whose work is running", registry=self.registry)
        self.evaluation_running = Gauge(
            "semsearch_evaluation_running", "1 while the /evaluation job runs", registry=self.registry
        )
        self.rejected = Counter(
            "semsearch_rejected", "Requests refused with 503 because the queue was full", registry=self.registry
        )
        self.timed_out = Counter(
            "semsearch_timed_out", "Requests answered 504 because their deadline passed", registry=self.registry
        )
        self.coalesced = Histogram(
            "semsearch_coalesced_queries",
            "Single queries (/search, /compare) encoded together in one encoder call",
            ("pipeline",),
            buckets=COALESCED_BUCKETS,
            registry=self.registry,
        )

    def observe(self, pipeline: str, timings: Timings) -> None:
        children = self._stage_children.get(pipeline)
        if children is None:  # labelled once per pipeline: `labels()` per observation costs more than observing
            children = {stage: self.stage.labels(pipeline=pipeline, stage=stage) for stage in STAGES}
            self._stage_children[pipeline] = children
        for stage, seconds in stage_seconds(timings).items():
            children[stage].observe(max(0.0, seconds))

    def observe_batch(self, pipeline: str, timings: Timings, size: int) -> None:
        for stage, seconds in stage_seconds(timings).items():
            self.batch_stage.labels(pipeline=pipeline, stage=stage).observe(max(0.0, seconds))
        self.batch_queries.labels(pipeline=pipeline).observe(size)

    def observe_coalesced(self, pipeline: str, size: int) -> None:
        self.coalesced.labels(pipeline=pipeline).observe(size)

    def watch_queue(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the queue depth and the in-flight count from these callables at each scrape."""
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)

    def count(self, route: str, status: int) -> None:
        self.requests.labels(route=route).inc()
        if status >= 400:
            self.errors.labels(route=route, status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware counting every HTTP response (and errors) per route into `ServerMetrics`.

    Routes are labelled by their path when it is one of `routes`, else "unmatched", so label values stay bounded.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else UNMATCHED
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.count(route, status)
