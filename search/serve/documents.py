"""The `/documents` routes: writes to the served corpus (`search.writes.CorpusWriter`), and reading documents back.

- `PUT /documents` `{documents: [{id, title, text, metadata}]}`: upsert a batch (an existing id is replaced); 202
  once every pipeline's store has logged it, with its versions and state "encoding" (searches find the documents
  once the background worker has encoded them: see `GET /documents/{id}` or `/documents/status`).
- `DELETE /documents/{id}` (an id may hold `/`): 200 once deleted from every pipeline (searches stop returning it
  at once); 404 when no pipeline holds the id (and nothing changes).
- `GET /documents/{id}`: the stored document (title, snippet, metadata, version, state "live" or "encoding"); 404.
- `GET /documents/status`: the encoding queue, the worker's throughput, each pipeline's store and index.

Writes are off unless the server runs with `--writes` (which needs an API key): PUT and DELETE are then 403. A batch
is checked whole before anything is logged (at most `max_write_docs` documents of at most `max_doc_chars`
characters, ids unique and not `status`, metadata flat), so a refused batch (422) changes nothing; a write that
would take the queue past `max_pending` is 503 with Retry-After.
"""

from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from indexes.filters import MetadataError, check_metadata
from indexes.livestore import NewDoc
from search.data.records import is_blank
from search.pipeline_set import PipelineSet
from search.serve.admission import LimitExceeded, ServerBusy
from search.serve.config import ServerLimits
from search.serve.schemas import KEY_ERROR, POST_ERRORS, error_responses, is_valid_unicode
from search.writes import CorpusWriter

MAX_ID_CHARS = 512
WRITES_DISABLED = "writes are disabled on this server: start `semsearch serve` with --writes (and an API key)"


def _unicode(value: Any) -> Any:
    if isinstance(value, str) and not is_valid_unicode(value):
        raise ValueError("not valid Unicode (it holds a lone surrogate)")
    return value


def _visible(value: str) -> str:
    if is_blank(value):
        raise ValueError("must contain a visible character")
    return value


RESERVED_IDS = ("status",)  # GET /documents/status is the queue's status, not a document's


def _addressable(value: str) -> str:
    if value in RESERVED_IDS:
        raise ValueError(f"the id {value!r} is reserved (GET /documents/{value} is the write queue's status)")
    return value


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return check_metadata(value)
    except MetadataError as err:
        raise ValueError(str(err)) from err


class DocumentStatusOut(BaseModel):
    id: str
    title: str
    snippet: str
    metadata: dict[str, Any]
    version: int = Field(description="the write that made this state of the document")
    state: str = Field(description="live (searchable) or encoding (queued; searches return the previous state)")
    replaces_version: int | None = None


class UpsertOut(BaseModel):
    first_version: int
    last_version: int
    ids: list[str]
    state: str = Field(description="encoding: logged, searchable once encoded (poll GET /documents/{id})")


class DeleteOut(BaseModel):
    id: str
    version: int
    deleted: bool
    was_encoding: bool = Field(description="an upsert of this id still being encoded was dropped")


def upsert_model(limits: ServerLimits) -> type[BaseModel]:
    """The PUT /documents body, with this server's limits."""
    DocId = Annotated[
        str,
        Field(min_length=1, max_length=MAX_ID_CHARS),
        BeforeValidator(_unicode),
        AfterValidator(_visible),
        AfterValidator(_addressable),
    ]
    Text = Annotated[str, Field(max_length=limits.max_doc_chars), BeforeValidator(_unicode)]

    class DocumentIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: DocId
        title: Text = ""
        text: Annotated[Text, AfterValidator(_visible)]
        metadata: Annotated[dict[str, Any] | None, AfterValidator(_metadata)] = Field(
            None, description="a flat object of strings, numbers and booleans (filterable in /search)"
        )

    class UpsertRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        documents: list[DocumentIn] = Field(
            ..., min_length=1, max_length=limits.max_write_docs,
            description=f"1..{limits.max_write_docs} documents; each id once",
        )  # fmt: skip

        @field_validator("documents")
        @classmethod
        def unique_ids(cls, docs: list[Any]) -> list[Any]:
            seen: set[str] = set()
            repeated = sorted({d.id for d in docs if d.id in seen or seen.add(d.id)})  # type: ignore[func-returns-value]
            if repeated:
                raise ValueError(f"duplicate document ids in one batch: {repeated[:5]}; send each id once")
            return docs

    return UpsertRequest


def documents_router(
    writer: Callable[[], CorpusWriter | None], pipelines: Callable[[], PipelineSet], limits: ServerLimits
) -> APIRouter:
    """The routes above; `writer()` is None when writes are off, `pipelines()` the loaded set."""
    router = APIRouter()
    UpsertRequest = upsert_model(limits)

    def writing() -> CorpusWriter:
        found = writer()
        if found is None:
            raise HTTPException(status_code=403, detail=WRITES_DISABLED)
        return found

    @router.get("/documents/status", responses=error_responses(KEY_ERROR, 503))
    async def documents_status() -> dict[str, Any]:
        """The encoding queue (pending upserts, those in flight), the worker's documents/s, and per pipeline its
        documents, version, index size, hidden positions and compactions."""
        found = writer()
        if found is None:
            return {"writes": False, "detail": WRITES_DISABLED}
        return {"writes": True, **await anyio.to_thread.run_sync(found.status)}

    @router.put(
        "/documents",
        status_code=202,
        response_model=UpsertOut,
        responses=error_responses(KEY_ERROR, 403, *POST_ERRORS),
    )
    async def upsert(body: UpsertRequest) -> JSONResponse:  # type: ignore[valid-type]
        found = writing()
        docs = [NewDoc(d.id, d.title, d.text, d.metadata or None) for d in body.documents]  # type: ignore[attr-defined]

        if len(docs) > limits.max_pending:
            raise LimitExceeded("documents", f"{len(docs)} documents are more than the encoding queue holds "
                                f"(max_pending={limits.max_pending}): send smaller batches")  # fmt: skip

        def run() -> dict[str, Any]:
            pending = next(iter(found.stores.values())).pending_count()
            if pending + len(docs) > limits.max_pending:
                raise ServerBusy(limits.retry_after_s, f"the encoding queue holds {pending} documents "
                                 f"(max_pending={limits.max_pending}): retry later")  # fmt: skip
            return found.upsert(docs)

        receipt = await anyio.to_thread.run_sync(run)
        return JSONResponse(status_code=202, content=UpsertOut(**receipt).model_dump())

    @router.delete("/documents/{doc_id:path}", response_model=DeleteOut, responses=error_responses(KEY_ERROR, 403, 404))
    async def delete(doc_id: str) -> DeleteOut:
        found = writing()
        deleted = (await anyio.to_thread.run_sync(found.delete, [doc_id]))[0]
        if deleted.pos is None and not deleted.was_pending:
            raise HTTPException(status_code=404, detail=f"no document {doc_id!r:.100} in this corpus")
        return DeleteOut(id=doc_id, version=deleted.version, deleted=True, was_encoding=deleted.was_pending)

    @router.get("/documents/{doc_id:path}", response_model=DocumentStatusOut, responses=error_responses(KEY_ERROR, 404))
    async def get_document(doc_id: str) -> dict[str, Any]:
        found = writer()
        store = found.stores[next(iter(found.stores))] if found is not None else pipelines().get().stored.docs
        doc = await anyio.to_thread.run_sync(store.get, doc_id)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"no document {doc_id!r:.100} in this corpus")
        return doc

    return router
