"""HTTP API: a FastAPI app built by `create_app(ServerConfig)`; routes are thin layers over `PipelineSet`.

Routes (OpenAPI at /docs):

- `POST /search` `{query, k, pipeline}`: hits and timings (tokenize, encode, search, rescore, total ms) of one
  pipeline (`pipeline` defaults to the first loaded).
- `POST /search/batch` `{queries, k, pipeline}`: up to 256 queries encoded as one batch; hits per query and the
  batch's timings.
- `POST /compare` `{query, k}`: every pipeline's hits and timings, its `recall@k_vs_teacher` (overlap of its top-k
  with the reference pipeline's top-k; the reference scores 1.0) and the ids it is `missing` / has `extra`.
- `GET /pipelines`: encoder and precision, document encoder, mode, index, search parameters, sizes, build info.
- `GET /metrics`: the evaluation summary of every pipeline side by side (nDCG@10, recall@100, MRR@10,
  recall@10 vs the reference encoder's exact top-10 and vs the same encoder's exact search, latency p50/p95/p99),
  on the dataset the indexes were built on. Computed lazily on the first call and cached for the life of the
  process (`cached`, `computed_at` say which), or at startup with `--metrics-on-startup`. 404 when the dataset
  cannot be found or has no qrels for the split, 409 when it is not the indexed corpus.
- `GET /metrics/prometheus`: live latency histograms per pipeline and stage, request and error counters.
- `GET /health`.

Routes are sync `def`, so they run in anyio's worker threads (`workers_threads` sizes that pool).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from search.pipeline import Hit, Timings
from search.serve.config import ServerConfig, ServerLimits
from search.serve.live_metrics import CountRequests, ServerMetrics
from search.serve.pipelines import MetricsUnavailable, PipelineSet, UnknownPipelineError

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = ServerLimits.max_query_chars
MAX_K = ServerLimits.max_k
MAX_BATCH = ServerLimits.max_batch


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("query must not be empty or whitespace-only")
    return value


Query = Annotated[str, Field(max_length=MAX_QUERY_CHARS, description="free text; not empty")]
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"number of hits, 1..{MAX_K}")]
PipelineName = Annotated[str | None, Field(description="a loaded pipeline; default: the first loaded")]


class SearchRequest(BaseModel):
    query: Query
    k: K = 10
    pipeline: PipelineName = None

    query_not_blank = field_validator("query")(_not_blank)


class BatchSearchRequest(BaseModel):
    queries: list[Query] = Field(..., min_length=1, max_length=MAX_BATCH, description=f"1..{MAX_BATCH} queries")
    k: K = 10
    pipeline: PipelineName = None

    @field_validator("queries")
    @classmethod
    def queries_not_blank(cls, values: list[str]) -> list[str]:
        blank = [str(i) for i, value in enumerate(values) if not value.strip()]
        if blank:
            raise ValueError(f"query must not be empty or whitespace-only: queries[{', '.join(blank)}]")
        return values


class CompareRequest(BaseModel):
    query: Query
    k: K = 10

    query_not_blank = field_validator("query")(_not_blank)


class HitOut(BaseModel):
    id: str
    score: float
    title: str
    snippet: str


class TimingsOut(BaseModel):
    tokenize_ms: float = Field(description="tokenising (0 when the encoder cannot time it apart)")
    encode_ms: float = Field(description="the model, without tokenising")
    search_ms: float = Field(description="the index (for ,RFlat indexes: the candidate search)")
    rescore_ms: float = Field(description="exact re-ranking of ,RFlat candidates; 0 for other indexes")
    total_ms: float


class SearchResponse(BaseModel):
    pipeline: str
    hits: list[HitOut]
    timings: TimingsOut


class BatchItemOut(BaseModel):
    query: str
    hits: list[HitOut]


class BatchSearchResponse(BaseModel):
    pipeline: str
    results: list[BatchItemOut]
    timings: TimingsOut


class ComparisonOut(BaseModel):
    hits: list[HitOut]
    timings: TimingsOut
    recall_at_k_vs_teacher: float = Field(
        serialization_alias="recall@k_vs_teacher", description="|top-k ∩ reference top-k| / |reference top-k|"
    )
    missing: list[str] = Field(description="ids in the reference's top-k but not in this pipeline's")
    extra: list[str] = Field(description="ids in this pipeline's top-k but not in the reference's")


class CompareResponse(BaseModel):
    query: str
    k: int
    reference: str
    pipelines: dict[str, ComparisonOut]


def hits_out(hits: list[Hit]) -> list[HitOut]:
    return [HitOut(**vars(hit)) for hit in hits]


def timings_out(timings: Timings) -> TimingsOut:
    return TimingsOut(**vars(timings))


class JsonBodies:
    """Treat every POST body as JSON, whatever its content type says.

    `curl -d '{"query": ...}'` sends `application/x-www-form-urlencoded`; every POST route of this API takes JSON,
    so the body is parsed (and validated, with 422s) as JSON instead of being refused as a form.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(key, value) for key, value in scope["headers"] if key != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class PipelineHolder:
    """Holds the pipelines the lifespan hook loads, so routes never reach into app state."""

    def __init__(self) -> None:
        self._pipelines: PipelineSet | None = None

    def set(self, pipelines: PipelineSet | None) -> None:
        self._pipelines = pipelines

    def get(self) -> PipelineSet:
        if self._pipelines is None:
            raise HTTPException(status_code=503, detail="the search pipelines are not loaded yet")
        return self._pipelines


def create_app(config: ServerConfig) -> FastAPI:
    """Build the app; the pipelines are loaded once at startup (the lifespan hook) from `config.sources()`."""
    holder = PipelineHolder()
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if config.workers_threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = config.workers_threads
        pipelines = PipelineSet.load(
            config.sources(),
            threads=config.threads,
            search_params=config.search_params,
            reference=config.reference,
            metrics_dataset=config.metrics_dataset,
            metrics_split=config.metrics_split,
            observer=metrics.observe,
            batch_observer=metrics.observe_batch,
        )
        holder.set(pipelines)
        if config.metrics_on_startup:
            try:
                summary = pipelines.metrics_summary()
                logger.info("metrics summary computed in %.1f s", summary.compute_seconds)
            except MetricsUnavailable as err:
                logger.warning("no metrics summary at startup: %s (GET /metrics retries and says why)", err.message)
        yield
        holder.set(None)

    app = FastAPI(title="semsearch", description=__doc__, lifespan=lifespan)

    @app.exception_handler(UnknownPipelineError)
    async def unknown_pipeline(_: Request, err: UnknownPipelineError) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["body", "pipeline"], "msg": str(err)}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.get("/health")
    def health() -> dict[str, Any]:
        pipelines = holder.get()
        return {
            "status": "ok",
            "pipeline": pipelines.get().describe(),
            "pipelines": pipelines.names,
            "reference": pipelines.reference,
        }

    @app.post("/search", response_model=SearchResponse)
    def search(request: SearchRequest) -> SearchResponse:
        name, result = holder.get().search(request.query, request.k, request.pipeline)
        return SearchResponse(pipeline=name, hits=hits_out(result.hits), timings=timings_out(result.timings))

    @app.post("/search/batch", response_model=BatchSearchResponse)
    def search_batch(request: BatchSearchRequest) -> BatchSearchResponse:
        name, result = holder.get().search_batch(request.queries, request.k, request.pipeline)
        items = [BatchItemOut(query=q, hits=hits_out(h)) for q, h in zip(request.queries, result.hits, strict=True)]
        return BatchSearchResponse(pipeline=name, results=items, timings=timings_out(result.timings))

    @app.post("/compare", response_model=CompareResponse)
    def compare(request: CompareRequest) -> CompareResponse:
        result = holder.get().compare(request.query, request.k)
        pipelines = {
            name: ComparisonOut(
                hits=hits_out(c.hits),
                timings=timings_out(c.timings),
                recall_at_k_vs_teacher=c.recall_vs_reference,
                missing=c.missing,
                extra=c.extra,
            )
            for name, c in result.pipelines.items()
        }
        return CompareResponse(query=result.query, k=result.k, reference=result.reference, pipelines=pipelines)

    @app.get("/pipelines")
    def pipelines() -> dict[str, Any]:
        loaded = holder.get()
        return {
            "default": loaded.default,
            "reference": loaded.reference,
            "limits": config.limits.describe(),
            "pipelines": loaded.describe(),
        }

    @app.get("/metrics")
    def metrics_summary() -> dict[str, Any]:
        try:
            summary = holder.get().metrics_summary()
        except MetricsUnavailable as err:
            raise HTTPException(status_code=err.status, detail=err.message) from err
        return {
            **summary.body,
            "computed_at": summary.computed_at,
            "compute_seconds": summary.compute_seconds,
            "cached": summary.cached,
        }

    @app.get("/metrics/prometheus")
    def prometheus() -> Response:
        return Response(content=metrics.render(), media_type=metrics.content_type)

    app.add_middleware(CountRequests, metrics=metrics, routes=[route.path for route in app.routes])
    app.add_middleware(JsonBodies)
    return app
