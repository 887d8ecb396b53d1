"""What the HTTP API accepts and answers: request and response models, error bodies, and what
responses may show.

- `request_models(limits)`: the request bodies, built from the server's `ServerLimits`, so validation and the OpenAPI
  schema both state the limits in force. `k` is a strict integer; a query must be valid Unicode (no lone surrogates)
  and hold a visible character (`is_blank`: whitespace, zero-width and other invisible characters do not count).
- `validation_errors_out`: 422 bodies as `{type, loc, msg}` items, never echoing the input, always JSON-encodable.
- `error_responses`: the documented error responses (`ErrorOut`, `ValidationErrorOut`) of each route.
- `public_description`: pipeline descriptions without server paths, for `/pipelines`.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from fastapi import Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator

from indexes.filters import MetadataError, parse_filter
from search.compare import CompareResult
from search.data.records import is_blank, visible_pattern
from search.pipeline import BatchResult, SearchResult
from search.serve.config import ServerLimits

NOT_BLANK = "query must not be empty or whitespace-only"
NOT_BLANK_RULE = (
    "must contain a visible character: a query made only of whitespace or invisible characters (Unicode categories "
    "Cc, Cf, Zs, Zl, Zp, zero-width spaces and joiners, U+2060, U+FEFF) is refused; it must be valid Unicode "
    "(no lone surrogates)"
)


def is_valid_unicode(value: str) -> bool:
    """False when `value` holds a lone surrogate (JSON allows "\\ud800"; it cannot be encoded, tokenised or echoed)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


UNICODE_PROBLEM = "query is not valid Unicode"
UNICODE_HINT = " (it holds a lone surrogate: half of a UTF-16 pair, which no text encoding can carry)"
BLANK_HINT = " (zero-width and other invisible characters count as whitespace)"


def check_query_unicode(value: Any) -> Any:
    """Before str validation (pydantic's own refusal of lone surrogates does not say which rule failed)."""
    if isinstance(value, str) and not is_valid_unicode(value):
        raise ValueError(UNICODE_PROBLEM + UNICODE_HINT)
    return value


def check_query_visible(value: str) -> str:
    if is_blank(value):
        raise ValueError(NOT_BLANK + BLANK_HINT)
    return value


def check_pipeline_name(value: Any) -> Any:
    if isinstance(value, str) and not is_valid_unicode(value):
        raise ValueError("pipeline is not valid Unicode (it holds a lone surrogate)")
    return value


def check_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A metadata filter that `indexes.filters.parse_filter` accepts (its message names the key at fault)."""
    try:
        parse_filter(value)
    except MetadataError as err:
        raise ValueError(str(err)) from err
    return value


def queries_at(items: list[Any], bad: Callable[[Any], bool]) -> str | None:
    """`queries[1, 4]` for the items `bad` picks out, or None."""
    at = [str(i) for i, item in enumerate(items) if bad(item)]
    return f"queries[{', '.join(at)}]" if at else None


def batch_cost_bounds(limits: ServerLimits) -> str:
    """What bounds one /search/batch request's work on this server, for its OpenAPI description."""
    return (
        f"Up to {limits.max_batch} queries searched as one request, encoded {limits.micro_batch} at a time. Its cost "
        f"is bounded before any model work: at most {limits.max_batch_tokens} tokens in all (each query cut to the "
        f"encoder's maximum length; max_batch_tokens), {limits.max_batch_hits} hits (queries x k; max_batch_hits) "
        f"and {limits.max_rescore_candidates} re-ranked candidates (max_rescore_candidates), else 422 naming the "
        f"limit; and in time: the work stops between micro-batches with 504 once the request has run "
        f"{limits.request_timeout_s:g} s (request_timeout_s), or when the client leaves. It takes one of the "
        f"{limits.max_concurrency} work slots; up to {limits.max_queue} requests wait for one, more get 503."
    )


@dataclass(frozen=True)
class RequestModels:
    """The request bodies of the POST routes, with the limits of one server."""

    search: type[BaseModel]
    batch: type[BaseModel]
    compare: type[BaseModel]


MAX_COMPARED = 64  # pipelines one /compare may name (a server loads a handful)
MAX_OVERSAMPLE = 100  # candidates per hit a request may ask to rescore (max_rescore_candidates bounds the total)


def integral_number(value: Any) -> Any:
    """`3.0` as 3: JSON Schema counts a number with a zero fraction as an integer, so a client (or a schema-driven
    tester) may send it; `3.5`, `true` and `"3"` stay refused by the strict int that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def request_models(limits: ServerLimits, pipelines: Sequence[str] = ()) -> RequestModels:
    """Request models enforcing (and documenting in OpenAPI) `limits`: query length, batch size, k; and `pipelines`,
    the names a request may give (an enum in the schema; the route's own check names the loaded ones).

    `k` is a strict integer: `true`, `"10"` and `3.5` are refused rather than coerced (`3.0` is the integer 3, as
    JSON Schema defines it).
    """
    max_chars, max_k, max_batch = limits.max_query_chars, limits.max_k, limits.max_batch
    query_field = Field(
        max_length=max_chars,
        description=f"free text, 1..{max_chars} characters; {NOT_BLANK_RULE}",
        json_schema_extra={"minLength": 1, "pattern": visible_pattern()},
    )
    # Field first: its constraints then apply to the str itself ("at most N characters"); the validators wrap it.
    Query = Annotated[str, query_field, BeforeValidator(check_query_unicode), AfterValidator(check_query_visible)]
    K = Annotated[
        int,
        Field(ge=1, le=max_k, strict=True, description=f"number of hits, an integer 1..{max_k}"),
        BeforeValidator(integral_number),
    ]
    Oversample = Annotated[
        float | None,
        Field(
            ge=1,
            le=MAX_OVERSAMPLE,
            strict=True,
            description=f"rescore the top k x oversample candidates of the codes exactly from the index's vector file "
            f"(1..{MAX_OVERSAMPLE}); default: the pipeline's own setting (see GET /pipelines); refused (422) for an "
            "index that keeps no vector file or re-ranks with ,RFlat",
        ),
    ]
    PipelineName = Annotated[
        str | None,
        Field(
            description="a loaded pipeline (see GET /pipelines); default: the first loaded",
            json_schema_extra={"enum": [*pipelines, None]} if pipelines else None,
        ),
        BeforeValidator(check_pipeline_name),
    ]
    pipeline_enum = Field(
        description="a loaded pipeline (see GET /pipelines)",
        json_schema_extra={"enum": list(pipelines)} if pipelines else None,
    )
    BatchItem = Annotated[
        str, Field(max_length=max_chars, json_schema_extra={"minLength": 1, "pattern": visible_pattern()})
    ]

    Filter = Annotated[
        dict[str, Any] | None,
        AfterValidator(check_filter),
        Field(
            description='only documents whose metadata match: {"key": value} (equality), {"key": {"in": [...]}}, '
            '{"key": {"gte": 1, "lt": 5}} (ranges on numbers); every condition must hold. k hits come back whenever '
            "k documents match",
            json_schema_extra={"examples": [{"year": {"gte": 2015}, "lang": {"in": ["en", "de"]}}]},
        ),
    ]

    class SearchRequest(BaseModel):
        query: Query
        k: K = 10
        pipeline: PipelineName = None
        oversample: Oversample = None
        filter: Filter = None

    class BatchSearchRequest(BaseModel):
        queries: list[BatchItem] = Field(
            ...,
            min_length=1,
            max_length=max_batch,
            description=f"1..{max_batch} queries of 1..{max_chars} characters each; each {NOT_BLANK_RULE}",
        )
        k: K = 10
        pipeline: PipelineName = None
        oversample: Oversample = None
        filter: Filter = None

        @field_validator("queries", mode="before")
        @classmethod
        def queries_unicode(cls, values: Any) -> Any:
            bad = (
                queries_at(values, lambda v: isinstance(v, str) and not is_valid_unicode(v))
                if isinstance(values, list)
                else None
            )
            if bad:
                raise ValueError(f"{UNICODE_PROBLEM}: {bad}{UNICODE_HINT}")
            return values

        @field_validator("queries")
        @classmethod
        def queries_visible(cls, values: list[str]) -> list[str]:
            bad = queries_at(values, is_blank)
            if bad:
                raise ValueError(f"{NOT_BLANK}: {bad}{BLANK_HINT}")
            return values

    class CompareRequest(BaseModel):
        query: Query
        k: K = 10
        oversample: Oversample = None
        filter: Filter = None
        pipelines: list[Annotated[str, BeforeValidator(check_pipeline_name), pipeline_enum]] | None = Field(
            None,
            min_length=1,
            max_length=MAX_COMPARED,
            description="the pipelines to compare, each named once (default: every loaded one); the reference is "
            "always searched and answered, since the others are measured against it",
            json_schema_extra={"uniqueItems": True},
        )

        @field_validator("pipelines")
        @classmethod
        def unique_pipelines(cls, values: list[str] | None) -> list[str] | None:
            if values is not None and len(set(values)) != len(values):
                raise ValueError("pipelines must not repeat a name")
            return values

    return RequestModels(search=SearchRequest, batch=BatchSearchRequest, compare=CompareRequest)


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


ENCODING_IDS_SHOWN = 20
BATCH_SIZE_DESCRIPTION = (
    "queries encoded together with this one (concurrent queries to a pipeline are coalesced): `timings` are that "
    "batch's"
)


class EncodingOut(BaseModel):
    """Writes not yet searchable: upserts logged and waiting for (or in) the background encoder."""

    documents: int = Field(description="upserts still being encoded (searches return each id's previous state)")
    ids: list[str] = Field(description=f"the oldest of them, at most {ENCODING_IDS_SHOWN}")


class SearchResponse(BaseModel):
    pipeline: str
    hits: list[HitOut]
    timings: TimingsOut
    batch_size: int = Field(1, description=BATCH_SIZE_DESCRIPTION)
    encoding: EncodingOut | None = Field(None, description="on a server taking writes: what is still being encoded")


class BatchItemOut(BaseModel):
    query: str
    hits: list[HitOut]


class BatchSearchResponse(BaseModel):
    pipeline: str
    results: list[BatchItemOut]
    timings: TimingsOut


class CompareHitOut(HitOut):
    reference_rank: int | None = Field(
        description="this document's 1-based rank in the reference's top-k; null when the reference did not find it"
    )


class ComparisonOut(BaseModel):
    hits: list[CompareHitOut]
    timings: TimingsOut
    recall_at_k_vs_teacher: float = Field(
        alias="recall@k_vs_teacher", description="|top-k ∩ reference top-k| / |reference top-k|"
    )
    missing: list[str] = Field(description="ids in the reference's top-k but not in this pipeline's")
    extra: list[str] = Field(description="ids in this pipeline's top-k but not in the reference's")
    speedup_vs_reference: float = Field(description="the reference's total_ms / this pipeline's total_ms")
    batch_size: int = Field(1, description=BATCH_SIZE_DESCRIPTION)


class CompareResponse(BaseModel):
    query: str
    k: int
    reference: str
    pipelines: dict[str, ComparisonOut]
    encoding: EncodingOut | None = Field(None, description="on a server taking writes: what is still being encoded")


def search_response(
    pipeline: str, result: SearchResult, batch_size: int = 1, encoding: Mapping[str, Any] | None = None
) -> SearchResponse:
    """The `/search` answer, validated from plain dicts in one pass (cheaper than a model per hit)."""
    body = {"pipeline": pipeline, "hits": [vars(hit) for hit in result.hits], "timings": vars(result.timings)}
    return SearchResponse.model_validate({**body, "batch_size": batch_size, "encoding": encoding})


def batch_response(pipeline: str, queries: Sequence[str], result: BatchResult) -> BatchSearchResponse:
    """The `/search/batch` answer, validated from plain dicts in one pass, like `search_response`."""
    items = [{"query": q, "hits": [vars(hit) for hit in hits]} for q, hits in zip(queries, result.hits, strict=True)]
    return BatchSearchResponse.model_validate({"pipeline": pipeline, "results": items, "timings": vars(result.timings)})


def json_answer(model: BaseModel) -> Response:
    """`model` as a JSON response, serialised once by pydantic (a route returning it skips FastAPI's second
    validation against its `response_model`, which documents the same model)."""
    return Response(content=model.model_dump_json(by_alias=True), media_type="application/json")


def compare_response(
    result: CompareResult, batch_sizes: Mapping[str, int] | None = None, encoding: Mapping[str, Any] | None = None
) -> CompareResponse:
    """The `/compare` answer: `result.to_dict()` (what `semsearch search --compare --json` prints) with each
    pipeline's `batch_size` (the queries encoded together with this one; 1 when not given)."""
    body = result.to_dict()
    for name, size in (batch_sizes or {}).items():
        body["pipelines"][name]["batch_size"] = size
    return CompareResponse.model_validate({**body, "encoding": encoding})


# --- errors ----------------------------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """A refusal: `detail` says what was wrong and how to fix it."""

    detail: str


class ValidationErrorItem(BaseModel):
    type: str = Field(description="the kind of error, e.g. value_error, int_type, json_invalid, limit_exceeded")
    loc: list[str | int] = Field(description='where in the request, e.g. ["body", "queries", 3]')
    msg: str = Field(description="what is wrong (never the raw input)")


class ValidationErrorOut(BaseModel):
    """A request that does not validate (422): one item per problem; the raw input is never echoed."""

    detail: list[ValidationErrorItem]


ERROR_DESCRIPTIONS = {
    400: "the Host header is not a name this server answers (text/plain 'Invalid host header'; start the server with "
    "--allowed-host NAME to accept one), or Content-Length is not a number",
    401: "the server has an API key and the request lacks 'Authorization: Bearer KEY' (or has a wrong key)",
    403: "writes are disabled on this server (start it with --writes and an API key)",
    404: "not found (for /evaluation: none has run yet, or its dataset cannot be found or has no qrels for the split)",
    409: "conflict (for /evaluation: the dataset is not the indexed corpus, or corpus vectors are not cached)",
    413: "the request body is over the max_body_bytes limit (refused before it is parsed)",
    415: "the request body is not 'Content-Type: application/json'",
    422: "the request does not validate: bad JSON, non-finite numbers, invalid Unicode, a blank query, limits",
    500: "the evaluation failed unexpectedly (the message says how)",
    503: "the pipelines are not loaded yet, or the server is full (see Retry-After)",
    504: "the request passed its deadline (request_timeout_s) and its work was stopped",
}
HOST_ERROR = 400  # every route: the Host check answers it in plain text, the body checks in JSON
KEY_ERROR = 401  # every API route (with an API key)
POST_ERRORS = (413, 415, 422, 503, 504)


PLAIN_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses: a JSON body `{"detail": ...}` (a list of problems for 422; 400
    may also be the Host check's plain text)."""
    return {
        status: {
            "model": ValidationErrorOut if status == 422 else ErrorOut,
            "description": ERROR_DESCRIPTIONS[status],
            **({"content": PLAIN_TEXT} if status == HOST_ERROR else {}),
        }
        for status in statuses
    }


def json_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`error_responses` for a route whose own responses are not JSON (FastAPI would give the errors the route's
    media type); the schemas are referenced by name, and the JSON routes put them in the components."""
    return {
        status: {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                **(PLAIN_TEXT if status == HOST_ERROR else {}),
            },
        }
        for status in statuses
        for model in [ValidationErrorOut if status == 422 else ErrorOut]
    }


SHOWN_ERRORS = 100  # at most this many validation errors are reported
SHOWN_MSG_CHARS = 500


def safe_text(text: str, limit: int = SHOWN_MSG_CHARS) -> str:
    """`text` that JSON can carry: lone surrogates written as \\udXXX escapes, cut to `limit` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_errors_out(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as `{type, loc, msg}` items: never the input, always JSON-safe."""
    items: list[dict[str, Any]] = []
    for error in list(errors)[:SHOWN_ERRORS]:
        error = error if isinstance(error, Mapping) else {"msg": str(error)}
        msg = str(error.get("msg", "invalid request"))
        ctx = error.get("ctx")
        if error.get("type") == "json_invalid" and isinstance(ctx, Mapping) and "error" in ctx:
            msg = f"{msg}: {ctx['error']}"
        loc = [
            part if isinstance(part, int) and not isinstance(part, bool) else safe_text(str(part), 200)
            for part in error.get("loc", ())
        ]
        items.append({"type": safe_text(str(error.get("type", "value_error")), 100), "loc": loc, "msg": safe_text(msg)})
    return items


# --- what responses may show -----------------------------------------------------------------------------------------

PRIVATE_KEYS = frozenset({"path", "dataset_path"})  # server file paths, dropped from descriptions


def is_absolute_path(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or text.startswith("~")


def public_description(value: Any) -> Any:
    """`value` (a pipeline's description) without server paths: keys that hold paths are dropped and absolute paths
    (such as `index_dir`) become their base name, so `/pipelines` never shows the server's layout."""
    if isinstance(value, Mapping):
        return {key: public_description(child) for key, child in value.items() if key not in PRIVATE_KEYS}
    if isinstance(value, list | tuple):
        return [public_description(child) for child in value]
    if isinstance(value, str) and is_absolute_path(value):
        return (PureWindowsPath(value) if PureWindowsPath(value).is_absolute() else PurePosixPath(value)).name
    return value


class EvaluationProgressOut(BaseModel):
    stage: str = Field(description="what the evaluation is doing now")
    done: int = Field(description="steps done: the reference's exact top-10, then one per pipeline")
    total: int


class EvaluationRunningOut(BaseModel):
    """202 from GET and POST /evaluation: the evaluation job is running; poll GET /evaluation."""

    status: str = Field(description="running")
    progress: EvaluationProgressOut
    started_at: str | None


class HealthOut(BaseModel):
    status: str = Field(description="ok: the process answers")


class ReadyOut(BaseModel):
    status: str = Field(description="ready: every pipeline is loaded and serving")


EVALUATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": EvaluationRunningOut, "description": "the evaluation is running in the background; poll again"},
    **error_responses(404, 409, 500, 503),
}
