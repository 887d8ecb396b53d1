"""HTTP API: a FastAPI app built by `create_app(ServerConfig)`; routes are thin layers over `Pipeline`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, field_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from search.pipeline import Pipeline

MAX_QUERY_CHARS = 10_000
MAX_K = 1000


@dataclass(frozen=True)
class ServerConfig:
    """What the server loads at startup."""

    index_dir: Path
    threads: int | None = None
    search_params: dict[str, float] = field(default_factory=dict)


class SearchRequest(BaseModel):
    query: str = Field(..., max_length=MAX_QUERY_CHARS, description="free text; not empty")
    k: int = Field(10, ge=1, le=MAX_K, description=f"number of hits, 1..{MAX_K}")

    @field_validator("query")
    @classmethod
    def query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be empty or whitespace-only")
        return value


class HitOut(BaseModel):
    id: str
    score: float
    title: str
    snippet: str


class TimingsOut(BaseModel):
    encode_ms: float
    search_ms: float
    total_ms: float


class SearchResponse(BaseModel):
    hits: list[HitOut]
    timings: TimingsOut


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
    """Holds the pipeline the lifespan hook loads, so routes never reach into app state."""

    def __init__(self) -> None:
        self._pipeline: Pipeline | None = None

    def set(self, pipeline: Pipeline | None) -> None:
        self._pipeline = pipeline

    def get(self) -> Pipeline:
        if self._pipeline is None:
            raise HTTPException(status_code=503, detail="the search pipeline is not loaded yet")
        return self._pipeline


def create_app(config: ServerConfig) -> FastAPI:
    """Build the app; the pipeline is loaded once at startup from `config.index_dir`."""
    holder = PipelineHolder()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.set(Pipeline.load(config.index_dir, threads=config.threads, search_params=config.search_params))
        yield
        holder.set(None)

    app = FastAPI(title="semsearch", description="Semantic search over a FAISS index", lifespan=lifespan)
    app.add_middleware(JsonBodies)

    @app.get("/health")
    def health() -> dict[str, object]:
        pipeline = holder.get()
        return {"status": "ok", "pipeline": pipeline.describe()}

    @app.post("/search", response_model=SearchResponse)
    def search(request: SearchRequest) -> SearchResponse:
        result = holder.get().search(request.query, request.k)
        return SearchResponse(
            hits=[HitOut(**vars(hit)) for hit in result.hits], timings=TimingsOut(**vars(result.timings))
        )

    return app
