"""Domain errors as HTTP answers: the one place that gives the search core's and the admission's exceptions their
status codes, JSON bodies and server-specific hints.

- 422 (`{type, loc, msg}` items, never echoing the input): a request that does not validate, an unknown pipeline,
  a request over a work limit;
- 503 + Retry-After: the server is full; 504: the request passed its deadline; 499: the client left;
- the evaluation's refusals (`evaluation_failure`): 404 when its dataset cannot be found or lacks the split, 409 when
  it is not the pipelines' corpus or their vectors are not cached, 500 for anything unexpected;
- 405 with an `Allow` header that lists every method the path declares (`install_allow_header`; Starlette's names
  only those of the first route it tried, so GET /evaluation's 405 would hide POST).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from search.evaluation.side_by_side import DatasetUnavailable, EvaluationUnavailable, VectorsNotCached
from search.pipeline_set import UnknownPipelineError
from search.serve.admission import ClientGone, DeadlineExceeded, LimitExceeded, NotApplicable, ServerBusy
from search.serve.live_metrics import ServerMetrics
from search.serve.schemas import safe_text, validation_errors_out

CLIENT_CLOSED_REQUEST = 499  # the client left before its answer (nginx's convention; nobody reads it)
EVALUATION_HINTS = {
    DatasetUnavailable: (
        "point the server at the dataset with --evaluation-dataset NAME_OR_PATH (and --evaluation-split)"
    ),
    VectorsNotCached: "then POST /evaluation again",
}


def evaluation_failure(failure: Exception) -> JSONResponse:
    """Why the evaluation has no summary: 404 (dataset), 409 (corpus or cache) or 500 (unexpected), with what to do."""
    if not isinstance(failure, EvaluationUnavailable):
        return JSONResponse(status_code=500, content={"detail": safe_text(f"the evaluation failed: {failure}")})
    status = 404 if isinstance(failure, DatasetUnavailable) else 409
    hint = next((text for kind, text in EVALUATION_HINTS.items() if isinstance(failure, kind)), None)
    detail = f"{failure}; {hint}" if hint else str(failure)
    return JSONResponse(status_code=status, content={"detail": safe_text(detail, limit=2000)})


def install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    """Map validation errors, `UnknownPipelineError` and the admission's exceptions to their answers on `app`
    (503s and 504s also counted in `metrics`)."""

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

    @app.exception_handler(NotApplicable)
    async def not_applicable(_: Request, err: NotApplicable) -> JSONResponse:
        detail = [{"type": "not_applicable", "loc": ["body", err.field], "msg": safe_text(str(err))}]
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


def install_allow_header(app: FastAPI, routes: Iterable[object]) -> None:
    """Answer 405 with `Allow` naming every method that `routes` (objects with `path` and `methods`) declare for the
    request's path; other HTTP errors keep FastAPI's answer."""
    allowed: dict[str, set[str]] = {}
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is not None and methods:
            allowed.setdefault(path, set()).update(methods)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        methods = allowed.get(request.url.path)
        if err.status_code == 405 and methods:
            err = StarletteHTTPException(405, detail=err.detail, headers={"Allow": ", ".join(sorted(methods))})
        return await http_exception_handler(request, err)
