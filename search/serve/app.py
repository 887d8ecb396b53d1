"""HTTP API: a FastAPI app built by `create_app(ServerConfig)`; routes are thin layers over `PipelineSet`.

Routes (OpenAPI at /docs):

- `POST /search` `{query, k, pipeline}`: hits and timings (tokenize, encode, search, rescore, total ms) of one
  pipeline (`pipeline` defaults to the first loaded).
- `POST /search/batch` `{queries, k, pipeline}`: up to max_batch queries (256 by default), encoded micro_batch at a
  time; hits per query and the batch's timings.
- `POST /compare` `{query, k, pipelines}`: every pipeline's (or the chosen ones' and the reference's) hits and
  timings, its `recall@k_vs_teacher` (overlap of its top-k with the reference pipeline's top-k; the reference scores
  1.0), the ids it is `missing` / has `extra`, each hit's `reference_rank` and the `speedup_vs_reference`.
- `GET /pipelines`: encoder and precision, document encoder, mode, index, search parameters, sizes, build info.
- `POST /evaluation`: start the evaluation of every pipeline side by side (nDCG@10, recall@100, MRR@10, recall@10
  vs the reference encoder's exact top-10 and vs the same encoder's exact search, latency p50/p95/p99) on the dataset
  the indexes were built on, in a background job (`search.serve.evaluation_job`) that never blocks a search; 202
  with its progress, and no second job while one runs.
- `GET /evaluation`: never starts work. The latest summary (200), its progress while it runs (202), 404 when none
  has run; when the last run failed, why: 404 when the dataset cannot be found or has no qrels for the split, 409
  when it is not the indexed corpus or a pipeline's corpus vectors are not cached (the server never re-encodes a
  corpus), 500 for an unexpected failure.
- `GET /metrics`: Prometheus text: latency histograms per pipeline and stage, request and error counters, queue depth.
- `GET /health`: `{"status": "ok"}` while the process answers; `GET /ready`: 200 once every pipeline is loaded and
  serving, 503 before. Neither needs the API key.
- `GET /openapi.json`, `GET /docs`: the OpenAPI schema and its interactive page, behind the API key.
- `GET /bench/results`: the recall-vs-latency map of `semsearch bench` (`--bench-dir`), for the /bench page.
- `GET /` and `GET /bench`: the web page (`search.serve.web`): side-by-side search and the recall-vs-latency map; it
  calls only the routes above, and needs no API key itself (it asks for one when the API answers 401).

Bounded work (`search.serve.admission`, limits from `config.limits`): a request over max_batch_hits,
max_rescore_candidates or max_batch_tokens is refused (422) before any model work; at most max_concurrency units of
work run at once and max_queue requests wait (503 + Retry-After beyond); a request past request_timeout_s gets 504,
and a request whose client left stops, at the next micro-batch. The search routes are `async`: waiting holds no
thread; the blocking work runs in anyio's worker threads, sized once with the other thread pools by a
`ThreadBudget` (shown in /pipelines). Concurrent single queries (/search, /compare) to one pipeline are coalesced
into one encoder call (`search.serve.batcher`; `batch_size` in the response); a query to an idle pipeline runs at
once, in the event loop when the pipeline is cheaper than `inline_max_ms`.

Safe by default (`search.serve.guard`, from `config.security`): the Host header must name the server (400,
Starlette's `TrustedHostMiddleware`); POST bodies must be `Content-Type: application/json` (415), at most
`max_body_bytes` (413, before parsing); with an API key every API route needs `Authorization: Bearer KEY` (401,
FastAPI's `HTTPBearer`, checked once the body has been parsed); a method a route does not declare gets 405; CORS
is off unless origins are configured. No body field takes a float, so NaN, Infinity or 1e400 anywhere a field is read
are 422s; 422s never echo the input (`search.serve.schemas`); no response shows a server path. Domain errors get
their status codes in `search.serve.errors`.
"""

# No `from __future__ import annotations`: the routes' request models are built per app (from `config.limits`) inside
# `create_app`, and FastAPI can only resolve such local classes from annotations that are evaluated at definition.

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client.exposition import choose_encoder

from indexes.filters import parse_filter
from search.evaluation.side_by_side import evaluate_side_by_side
from search.pipeline import BatchResult, SearchResult
from search.pipeline_set import PipelineSet
from search.serve.admission import Admission, NotApplicable, Ticket, check_shape, check_tokens, watched
from search.serve.batcher import Batchers
from search.serve.bench_results import load_bench_results
from search.serve.config import ServerConfig
from search.serve.documents import documents_router
from search.serve.errors import evaluation_failure, install_allow_header, install_error_handlers
from search.serve.evaluation_job import EvaluationJob, JobState
from search.serve.guard import api_key_dependency, install_guards
from search.serve.live_metrics import CountRequests, ServerMetrics
from search.serve.schemas import (
    EVALUATION_RESPONSES,
    HOST_ERROR,
    KEY_ERROR,
    POST_ERRORS,
    BatchSearchResponse,
    CompareResponse,
    EvaluationRunningOut,
    HealthOut,
    ReadyOut,
    SearchResponse,
    batch_cost_bounds,
    batch_response,
    compare_response,
    error_responses,
    json_answer,
    json_error_responses,
    public_description,
    request_models,
    search_response,
)
from search.serve.web import install_web
from search.writes import CorpusWriter
from semsearch_common.threads import ThreadBudget

logger = logging.getLogger(__name__)
T = TypeVar("T")


class PrometheusResponse(Response):
    """The Prometheus text exposition format (so OpenAPI documents /metrics with its content type)."""

    media_type = "text/plain"


NO_EVALUATION = (
    "no evaluation has run on this server yet: POST /evaluation starts one in the background (then poll GET "
    "/evaluation), or start the server with --evaluate-on-startup"
)


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

    def get_or_none(self) -> T | None:
        return self._value


def running_out(state: JobState) -> JSONResponse:
    """202 with the running evaluation's progress, pointing at where to poll."""
    body = EvaluationRunningOut(status=state.status, progress=state.progress(), started_at=state.started_at)
    return JSONResponse(status_code=202, content=body.model_dump(), headers={"Location": "/evaluation"})


def create_app(config: ServerConfig, preload: bool = False) -> FastAPI:
    """Build the app; the pipelines are loaded once from `config.sources()`: at startup (the lifespan hook), or here
    when `preload` is set, so a broken index or model fails before the server starts (`semsearch serve` does)."""
    holder: Loaded[PipelineSet] = Loaded()
    serving: Loaded[Batchers] = Loaded()
    evaluation: Loaded[EvaluationJob] = Loaded()
    metrics = ServerMetrics()
    limits = config.limits
    budget = ThreadBudget.plan(config.threads, config.workers_threads, limits.max_concurrency)
    models = request_models(config.limits, [source.name for source in config.sources()])
    SearchRequest, BatchSearchRequest, CompareRequest = models.search, models.batch, models.compare

    writes: Loaded[CorpusWriter] = Loaded()

    def load_pipelines() -> PipelineSet:
        return PipelineSet.load(
            config.sources(),
            threads=budget.encoder,
            batch_search_threads=budget.search,
            search_params=config.search_params,
            mmap=config.mmap,
            writable=config.writes,
            reference=config.reference,
            observer=metrics.observe,
            batch_observer=metrics.observe_batch,
        )

    def make_writer(pipelines: PipelineSet) -> CorpusWriter | None:
        """The corpus writer of a server taking writes (it refuses pipelines over different corpora or with
        different write histories). Its worker encodes with its own encoders (as many threads as the query
        encoders) at low CPU priority: its threads take the cores the searches leave idle."""
        if not config.writes:
            return None
        return CorpusWriter(pipelines.pipelines, threads=budget.encoder, own_encoders=True)

    preloaded = load_pipelines() if preload else None
    prewriter = make_writer(preloaded) if preloaded is not None else None  # refusals fail before the server starts
    bench = load_bench_results(config.bench_dir) if config.bench_dir is not None else None  # a bad folder fails now

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = budget.request_pool
        pipelines = preloaded if preloaded is not None else load_pipelines()
        holder.set(pipelines)
        spec = config.evaluation()
        job = EvaluationJob(
            lambda progress: evaluate_side_by_side(pipelines.pipelines, pipelines.reference, spec, progress),
            on_change=metrics.evaluation_running.set,
        )
        evaluation.set(job)
        if config.evaluate_on_startup:
            job.start()
        budget.apply_torch()  # process-wide: once, after every encoder is loaded
        logger.info("thread budget: %s", budget.describe())
        admission = Admission(limits)
        metrics.watch_queue(lambda: admission.queued, lambda: admission.in_flight)
        batchers = Batchers(pipelines.pipelines, admission, limits, metrics.observe, metrics.observe_coalesced)
        writer = prewriter if preloaded is not None else make_writer(pipelines)
        if writer is not None:
            writer.start()  # encodes what an earlier run left pending, then what PUT /documents queues
            writes.set(writer)
        try:
            async with anyio.create_task_group() as workers:
                batchers.start(workers)
                serving.set(batchers)
                yield
                serving.set(None)
                workers.cancel_scope.cancel()
        finally:
            if writer is not None:
                writes.set(None)
                await anyio.to_thread.run_sync(writer.close)
        holder.set(None)

    app = FastAPI(
        title="semsearch",
        description=__doc__,
        lifespan=lifespan,
        responses=error_responses(HOST_ERROR),
        docs_url=None,  # served below, behind the API key like the rest of the API
        openapi_url=None,
    )
    install_error_handlers(app, metrics)
    # every API route needs the key (when the server has one); the liveness routes and the page do not
    api = APIRouter(dependencies=[Depends(api_key_dependency(config.security.api_key))])

    @app.get("/health", response_model=HealthOut)
    async def health() -> dict[str, str]:
        """Liveness: the process answers. Needs no API key and does no work."""
        return {"status": "ok"}

    @app.get("/ready", response_model=ReadyOut, responses=error_responses(503))
    async def ready() -> dict[str, str]:
        """Readiness: 200 once every pipeline is loaded and serving, 503 before (and while shutting down)."""
        holder.get()
        serving.get()
        return {"status": "ready"}

    def encoding() -> dict[str, Any] | None:
        """What a server taking writes is still encoding (from the writer's memory: no store access per search)."""
        writer = writes.get_or_none()
        return writer.encoding_summary() if writer is not None else None

    async def filtered(names: list[str], body: Any, request: Request) -> dict[str, SearchResult]:
        """One query with a metadata filter, on each of `names` (not coalesced: each filter selects its own
        documents), as one unit of work."""
        where = parse_filter(body.filter)
        ticket = Ticket(limits.request_timeout_s)

        def run() -> dict[str, SearchResult]:
            ticket.check()
            return {n: holder.get().get(n).search(body.query, body.k, body.oversample, where) for n in names}

        async def work() -> dict[str, SearchResult]:
            async with serving.get().admission.request(ticket):
                return await anyio.to_thread.run_sync(run)

        return await watched(ticket, work, request)

    @api.post("/search", response_model=SearchResponse, responses=error_responses(KEY_ERROR, *POST_ERRORS))
    async def search(body: SearchRequest, request: Request) -> Response:
        loaded = holder.get()
        name = loaded.resolve(body.pipeline)
        check_shape(loaded.get(name), 1, body.k, limits, oversample=body.oversample)
        if body.filter is not None:
            return json_answer(search_response(name, (await filtered([name], body, request))[name], 1, encoding()))
        batchers = serving.get()
        # an idle pipeline answers at once (one query: nothing to stop between micro-batches, nothing to coalesce)
        found = await batchers.search_now(name, body.query, body.k, body.oversample)
        if found is None:
            ticket = Ticket(limits.request_timeout_s)
            found = await watched(
                ticket, lambda: batchers.search(name, body.query, body.k, ticket, body.oversample), request
            )
        return json_answer(search_response(name, found.result, found.batch_size, encoding()))

    @api.post(
        "/search/batch",
        response_model=BatchSearchResponse,
        responses=error_responses(KEY_ERROR, *POST_ERRORS),
        description=batch_cost_bounds(limits),
    )
    async def search_batch(body: BatchSearchRequest, request: Request) -> Response:
        loaded = holder.get()
        name = loaded.resolve(body.pipeline)
        check_shape(loaded.get(name), len(body.queries), body.k, limits, oversample=body.oversample)
        ticket = Ticket(limits.request_timeout_s)

        def run() -> BatchResult:  # in a worker thread, holding a slot
            ticket.check()
            check_tokens(loaded.get(name), body.queries, limits)
            options = {"micro_batch": limits.micro_batch, "checkpoint": ticket.check, "oversample": body.oversample,
                       "where": parse_filter(body.filter)}  # fmt: skip
            return loaded.search_batch(body.queries, body.k, name, **options)[1]

        async def work() -> BatchResult:
            async with serving.get().admission.request(ticket):
                return await anyio.to_thread.run_sync(run)

        result = await watched(ticket, work, request)
        return json_answer(batch_response(name, body.queries, result))

    @api.post("/compare", response_model=CompareResponse, responses=error_responses(KEY_ERROR, *POST_ERRORS))
    async def compare(body: CompareRequest, request: Request) -> CompareResponse:
        loaded = holder.get()
        names = loaded.compared_names(body.pipelines)
        for name in names:
            try:
                check_shape(loaded.get(name), 1, body.k, limits, oversample=body.oversample)
            except NotApplicable as err:
                raise NotApplicable(err.field, f"pipeline {name!r}: {err}") from err
        if body.filter is not None:
            results = await filtered(names, body, request)
            compared = loaded.compare_results(body.query, body.k, results)
            return compare_response(compared, dict.fromkeys(results, 1), encoding())
        ticket = Ticket(limits.request_timeout_s)
        found = await watched(
            ticket, lambda: serving.get().search_all(names, body.query, body.k, ticket, body.oversample), request
        )
        result = loaded.compare_results(body.query, body.k, {name: f.result for name, f in found.items()})
        return compare_response(result, {name: f.batch_size for name, f in found.items()}, encoding())

    @api.get("/pipelines", responses=error_responses(KEY_ERROR, 503))
    def pipelines() -> dict[str, Any]:
        loaded = holder.get()
        return {
            "default": loaded.default,
            "reference": loaded.reference,
            "limits": config.limits.describe(),
            "threads": budget.describe(),
            "pipelines": public_description(loaded.describe()),
        }

    @api.get("/bench/results", responses=error_responses(KEY_ERROR, 404))
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

    @api.get("/evaluation", responses={**error_responses(KEY_ERROR), **EVALUATION_RESPONSES})
    async def evaluation_summary() -> Any:
        """The side-by-side evaluation summary. Never starts work: 200 with the latest summary, 202 with progress
        while a run computes it, 404 when none has run (POST /evaluation starts one); after a failed run, why it
        cannot be computed (404/409/500) until the next POST."""
        state = evaluation.get().state()
        if state.status == "idle":
            raise HTTPException(status_code=404, detail=NO_EVALUATION)
        if state.status == "running":
            return running_out(state)
        if state.status == "failed" and state.failure is not None:
            return evaluation_failure(state.failure)
        return {**(state.summary or {}), "computed_at": state.finished_at, "compute_seconds": state.compute_seconds}

    @api.post(
        "/evaluation",
        status_code=202,
        response_model=EvaluationRunningOut,
        responses=error_responses(KEY_ERROR, 413, 415, 503),
    )
    async def start_evaluation() -> JSONResponse:
        """Start the evaluation in the background (the dataset is reloaded); 202 with its progress and `Location:
        /evaluation`. While one runs, no second one starts: the answer is the running one's progress."""
        return running_out(evaluation.get().start())

    @api.get("/metrics", response_class=PrometheusResponse, responses=json_error_responses(HOST_ERROR, KEY_ERROR))
    async def prometheus(request: Request) -> Response:
        """Prometheus text exposition (OpenMetrics when the scraper asks for it in Accept)."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encode(metrics.registry), media_type=content_type)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi_schema() -> dict[str, Any]:
        return app.openapi()

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="semsearch API")

    api.include_router(documents_router(lambda: writes.get_or_none(), holder.get, limits))
    app.include_router(api)
    install_web(app)
    install_guards(app, config.security, config.limits.max_body_bytes)
    install_allow_header(app, (*app.routes, *api.routes))
    paths = [path for route in (*app.routes, *api.routes) if (path := getattr(route, "path", None)) is not None]
    app.add_middleware(CountRequests, metrics=metrics, routes=paths)  # after the guards: counts their refusals too
    return app
