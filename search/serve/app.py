"""HTTP API: a FastAPI app built by `create_app(ServerConfig)`; routes are thin layers over `PipelineSet`.

Routes (OpenAPI at /docs):

- `POST /search` `{query, k, pipeline}`: hits and timings (tokenize, encode, search, rescore, total ms) of one
  pipeline (`pipeline` defaults to the first loaded).
- `POST /search/batch` `{queries, k, pipeline}`: up to 256 queries encoded as one batch; hits per query and the
  batch's timings.
- `POST /compare` `{query, k, pipelines}`: every pipeline's (or the chosen ones' and the reference's) hits and
  timings, its `recall@k_vs_teacher` (overlap of its top-k with the reference pipeline's top-k; the reference scores
  1.0), the ids it is `missing` / has `extra`, each hit's `reference_rank` and the `speedup_vs_reference`.
- `GET /pipelines`: encoder and precision, document encoder, mode, index, search parameters, sizes, build info.
- `GET /metrics`: the evaluation summary of every pipeline side by side (nDCG@10, recall@100, MRR@10,
  recall@10 vs the reference encoder's exact top-10 and vs the same encoder's exact search, latency p50/p95/p99),
  on the dataset the indexes were built on. Computed by a background job (`search.serve.metrics_job`) so it never
  blocks a search: started at startup with `--metrics-on-startup`, by `POST /metrics/refresh`, or by the first
  `GET /metrics`; 202 with progress while it runs, then 200. 404 when the dataset cannot be found or has no qrels for
  the split, 409 when it is not the indexed corpus or a pipeline's corpus vectors are not cached (the server never
  re-encodes a corpus); a failure is kept until the next refresh.
- `POST /metrics/refresh`: start the evaluation again (202; no second job while one runs).
- `GET /metrics/prometheus`: live latency histograms per pipeline and stage, request and error counters.
- `GET /health`.
- `GET /bench/results`: the recall-vs-latency map of `semsearch bench` (`--bench-dir`), for the /bench page.
- `GET /` and `GET /bench`: the web page (`search.serve.web`): side-by-side search and the recall-vs-latency map; it
  calls only the routes above, and needs no API key itself (it asks for one when the API answers 401).

Bounded work (`search.serve.admission`, limits from `config.limits`): a request over max_batch_hits,
max_rescore_candidates or max_batch_tokens is refused (422) before any model work; at most max_concurrency units of
work run at once and max_queue requests wait (503 + Retry-After beyond); a request past request_timeout_s gets 504,
and a request whose client left stops, at the next micro-batch. The search routes are `async`: waiting holds no
thread; the blocking work runs in anyio's worker threads, sized once with the other thread pools by a
`ThreadBudget` (shown in /pipelines). Concurrent single queries (/search, /compare) to one pipeline are coalesced
into one encoder call (`search.serve.batcher`; `batch_size` in the response).

Safe by default (`search.serve.guard`, from `config.security`): POST bodies must be `Content-Type: application/json`
(415), at most `max_body_bytes` (413, before parsing); the Host header must name the server (400); with an API key
every route needs `Authorization: Bearer KEY` (401); CORS is off unless origins are configured. JSON bodies are
parsed strictly (NaN, Infinity, 1e400 are 422s) and 422s never echo the input (`search.serve.schemas`); no response
shows a server path.
"""

# No `from __future__ import annotations`: the routes' request models are built per app (from `config.limits`) inside
# `create_app`, and FastAPI can only resolve such local classes from annotations that are evaluated at definition.

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from common.threads import ThreadBudget
from search.pipeline import BatchResult
from search.serve.admission import (
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
from search.serve.batcher import Batchers
from search.serve.bench_results import load_bench_results
from search.serve.config import ServerConfig, ServerLimits
from search.serve.guard import install_guards
from search.serve.live_metrics import CountRequests, ServerMetrics
from search.serve.metrics_job import JobState, MetricsJob
from search.serve.pipelines import PipelineSet, UnknownPipelineError
from search.serve.schemas import (
    COMMON_ERRORS,
    METRICS_RESPONSES,
    POST_ERRORS,
    BatchItemOut,
    BatchSearchResponse,
    CompareResponse,
    MetricsRunningOut,
    SearchResponse,
    StrictJsonRoute,
    compare_response,
    error_responses,
    hits_out,
    json_error_responses,
    public_description,
    request_models,
    safe_text,
    timings_out,
    validation_errors_out,
)
from search.serve.web import install_web

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The default limits (the limits in force are `config.limits`, shown in /pipelines and the OpenAPI schema).
MAX_QUERY_CHARS = ServerLimits.max_query_chars
MAX_K = ServerLimits.max_k
MAX_BATCH = ServerLimits.max_batch


class PrometheusResponse(Response):
    """The Prometheus text exposition format (so OpenAPI documents /metrics/prometheus with its content type)."""

    media_type = ServerMetrics.content_type


CLIENT_CLOSED_REQUEST = 499  # the client left before its answer (nginx's convention; nobody reads it)


class Loaded(Generic[T]):
    """Holds what the lifespan hook loads (the pipelines, their batchers), so routes never reach into app state."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, value: T | None) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise HTTPException(status_code=503, detail="the search pipelines are not loaded yet")
        return self._value


def create_app(config: ServerConfig, preload: bool = False) -> FastAPI:
    """Build the app; the pipelines are loaded once from `config.sources()`: at startup (the lifespan hook), or here
    when `preload` is set, so a broken index or model fails before the server starts (`semsearch serve` does)."""
    holder: Loaded[PipelineSet] = Loaded()
    serving: Loaded[Batchers] = Loaded()
    evaluation: Loaded[MetricsJob] = Loaded()
    metrics = ServerMetrics()
    limits = config.limits
    budget = ThreadBudget.plan(config.threads, config.workers_threads, limits.max_concurrency)
    models = request_models(config.limits, [source.name for source in config.sources()])
    SearchRequest, BatchSearchRequest, CompareRequest = models.search, models.batch, models.compare

    def load_pipelines() -> PipelineSet:
        return PipelineSet.load(
            config.sources(),
            threads=budget.encoder,
            batch_search_threads=budget.search,
            search_params=config.search_params,
            mmap=config.mmap,
            reference=config.reference,
            metrics_dataset=config.metrics_dataset,
            metrics_split=config.metrics_split,
            observer=metrics.observe,
            batch_observer=metrics.observe_batch,
        )

    preloaded = load_pipelines() if preload else None
    bench = load_bench_results(config.bench_dir) if config.bench_dir is not None else None  # a bad folder fails now

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = budget.request_pool
        pipelines = preloaded if preloaded is not None else load_pipelines()
        holder.set(pipelines)
        job = MetricsJob(pipelines.compute_metrics, on_change=metrics.metrics_job_running.set)
        evaluation.set(job)
        if config.metrics_on_startup:
            job.start()
        budget.apply_torch()  # process-wide: once, after every encoder is loaded
        logger.info("thread budget: %s", budget.describe())
        admission = Admission(limits)
        metrics.watch_queue(lambda: admission.queued, lambda: admission.in_flight)
        batchers = Batchers(pipelines.pipelines, admission, limits, metrics.observe, metrics.observe_coalesced)
        async with anyio.create_task_group() as workers:
            batchers.start(workers)
            serving.set(batchers)
            yield
            serving.set(None)
            workers.cancel_scope.cancel()
        holder.set(None)

    app = FastAPI(title="semsearch", description=__doc__, lifespan=lifespan, responses=error_responses(*COMMON_ERRORS))
    app.router.route_class = StrictJsonRoute  # JSON bodies parsed strictly: NaN, Infinity, 1e400 are 422s

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        """422 with `{type, loc, msg}` items: the raw input is never echoed (it may be huge or not encodable)."""
        return JSONResponse(status_code=422, content={"detail": validation_errors_out(err.errors())})

    @app.exception_handler(UnknownPipelineError)
    async def unknown_pipeline(_: Request, err: UnknownPipelineError) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["body", "pipeline"], "msg": safe_text(str(err))}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(LimitExceeded)
    async def over_limit(_: Request, err: LimitExceeded) -> JSONResponse:
        detail = [{"type": "limit_exceeded", "loc": ["body", err.field], "msg": str(err)}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, err: ServerBusy) -> JSONResponse:
        metrics.rejected.inc()
        headers = {"Retry-After": str(err.retry_after_s)}
        return JSONResponse(status_code=503, content={"detail": str(err)}, headers=headers)

    @app.exception_handler(DeadlineExceeded)
    async def timed_out(_: Request, err: DeadlineExceeded) -> JSONResponse:
        metrics.timed_out.inc()
        return JSONResponse(status_code=504, content={"detail": str(err)})

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, err: ClientGone) -> JSONResponse:
        return JSONResponse(status_code=CLIENT_CLOSED_REQUEST, content={"detail": str(err)})

    @app.get("/health", responses=error_responses(503))
    def health() -> dict[str, Any]:
        pipelines = holder.get()
        return {
            "status": "ok",
            "pipeline": public_description(pipelines.get().describe()),
            "pipelines": pipelines.names,
            "reference": pipelines.reference,
        }

    @app.post("/search", response_model=SearchResponse, responses=error_responses(*POST_ERRORS))
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        loaded = holder.get()
        name = loaded.resolve(body.pipeline)
        check_shape(loaded.get(name), 1, body.k, limits)
        ticket = Ticket(limits.request_timeout_s)
        found = await watched(ticket, lambda: serving.get().search(name, body.query, body.k, ticket), request)
        result = found.result
        return SearchResponse(
            pipeline=name, hits=hits_out(result.hits), timings=timings_out(result.timings), batch_size=found.batch_size
        )

    @app.post("/search/batch", response_model=BatchSearchResponse, responses=error_responses(*POST_ERRORS))
    async def search_batch(body: BatchSearchRequest, request: Request) -> BatchSearchResponse:
        loaded = holder.get()
        name = loaded.resolve(body.pipeline)
        check_shape(loaded.get(name), len(body.queries), body.k, limits)
        ticket = Ticket(limits.request_timeout_s)

        def run() -> BatchResult:  # in a worker thread, holding a slot
            ticket.check()
            check_tokens(loaded.get(name), body.queries, limits)
            options = {"micro_batch": limits.micro_batch, "checkpoint": ticket.check}
            return loaded.search_batch(body.queries, body.k, name, **options)[1]

        async def work() -> BatchResult:
            async with serving.get().admission.request(ticket):
                return await anyio.to_thread.run_sync(run)

        result = await watched(ticket, work, request)
        items = [BatchItemOut(query=q, hits=hits_out(h)) for q, h in zip(body.queries, result.hits, strict=True)]
        return BatchSearchResponse(pipeline=name, results=items, timings=timings_out(result.timings))

    @app.post("/compare", response_model=CompareResponse, responses=error_responses(*POST_ERRORS))
    async def compare(body: CompareRequest, request: Request) -> CompareResponse:
        loaded = holder.get()
        names = loaded.compared_names(body.pipelines)
        for name in names:
            check_shape(loaded.get(name), 1, body.k, limits)
        ticket = Ticket(limits.request_timeout_s)
        found = await watched(ticket, lambda: serving.get().search_all(names, body.query, body.k, ticket), request)
        result = loaded.compare_results(body.query, body.k, {name: f.result for name, f in found.items()})
        return compare_response(result, {name: f.batch_size for name, f in found.items()})

    @app.get("/pipelines", responses=error_responses(503))
    def pipelines() -> dict[str, Any]:
        loaded = holder.get()
        return {
            "default": loaded.default,
            "reference": loaded.reference,
            "limits": config.limits.describe(),
            "threads": budget.describe(),
            "pipelines": public_description(loaded.describe()),
        }

    @app.get("/bench/results", responses=error_responses(404))
    def bench_results() -> dict[str, Any]:
        """The recall-vs-latency map of `semsearch bench` (the folder given to `semsearch serve --bench-dir`): one
        row per configuration with its `pareto` flag and `budget_pick`, the budget, the run's dataset and machine;
        `x` and `y` name the frontier's axes. Read at startup (restart the server to show a new run)."""
        if bench is None:
            raise HTTPException(
                status_code=404,
                detail="no bench results on this server: start `semsearch serve` with --bench-dir DIR, the --out "
                "folder of `semsearch bench`",
            )
        return bench.public()

    def running_out(state: JobState) -> JSONResponse:
        body = {"status": state.status, "progress": state.progress(), "started_at": state.started_at}
        return JSONResponse(status_code=202, content=MetricsRunningOut(**body).model_dump())

    @app.get("/metrics", responses=METRICS_RESPONSES)
    def metrics_summary() -> Any:
        """The side-by-side evaluation summary; 202 with progress while the background job computes it (the first
        call starts it), then 200; 404/409 say why it cannot be computed, until POST /metrics/refresh."""
        state = evaluation.get().ensure_started()
        if state.status == "running":
            return running_out(state)
        if state.status == "failed":
            raise HTTPException(status_code=state.error_status or 500, detail=state.error)
        return {**(state.summary or {}), "computed_at": state.finished_at, "compute_seconds": state.compute_seconds}

    @app.post("/metrics/refresh", status_code=202, response_model=MetricsRunningOut, responses=error_responses(503))
    def metrics_refresh() -> Any:
        """Start the evaluation again (the indexes' dataset is reloaded); 202 with the running job's progress. While
        one runs, no second one starts."""
        return running_out(evaluation.get().start())

    @app.get("/metrics/prometheus", response_class=PrometheusResponse, responses=json_error_responses(*COMMON_ERRORS))
    def prometheus() -> Response:
        return Response(content=metrics.render(), media_type=metrics.content_type)

    public_paths = install_web(app)
    install_guards(app, config.security, config.limits.max_body_bytes, public_paths)
    app.add_middleware(CountRequests, metrics=metrics, routes=[route.path for route in app.routes])  # after the guards
    return app
