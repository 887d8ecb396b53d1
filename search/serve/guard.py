"""Who may call the API and what they may send, configured from `Security` and `ServerLimits`.

- Host: Starlette's `TrustedHostMiddleware` with `Security.trusted_hosts()` (the bind address, loopback names when
  bound to loopback, and `--allowed-host` values; "*" accepts any, "*.example.org" a domain's names); any other Host
  header is refused with 400 "Invalid host header". This stops DNS rebinding: a web page whose name resolves to
  127.0.0.1 still sends its own name as Host.
- `RequestGuard`: POST bodies (and PUT /documents') must be `application/json` (parameters such as `charset=utf-8`
  allowed; `application/*+json` and everything else get 415), so a cross-site page cannot send a "simple"
  text/plain or form request without a CORS preflight; bodies over `max_body_bytes` get 413 before any parsing,
  from Content-Length when given and by counting streamed (chunked) bytes otherwise, whatever the method. The body
  is buffered (it is at most `max_body_bytes`) and replayed to the app.
- CORS is off (no Access-Control-* headers) unless `Security.cors_origins` names origins.
- `api_key_dependency`: with an API key, FastAPI's `HTTPBearer` reads `Authorization: Bearer KEY` and a wrong or
  missing key is 401; the app puts it on its API routes (the web page, its files and the liveness routes hold no
  data and need no key). Without a key it checks nothing, and the schema declares no security scheme.

`install_guards` adds the middlewares in that order (outermost first: Host, CORS, RequestGuard); a middleware added
after it (CountRequests) wraps them all and so counts their refusals. RequestGuard's refusals are JSON
`{"detail": "..."}` and never echo the body.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.serve.admission import ClientGone
from search.serve.config import Security

BODY_METHODS = frozenset({"POST"})  # the methods the API reads bodies of, on every path
BODY_PUTS = frozenset({"/documents"})  # the paths whose PUT bodies it reads (elsewhere a PUT is 405)
JSON_MEDIA_TYPE = "application/json"
BEARER_SCHEME = "Bearer"
WRONG_KEY = (
    "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the key the server was started with "
    "(--api-key or SEMSEARCH_API_KEY)"
)


async def send_error(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer `{"detail": detail}` with `status` (ASCII-only JSON, so any header text can be quoted safely)."""
    body = json.dumps({"detail": detail}).encode("ascii")
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def media_type(content_type: str | None) -> str | None:
    """`application/json` of `application/json; charset=utf-8`; None without a Content-Type."""
    if content_type is None:
        return None
    return content_type.partition(";")[0].strip().lower()


class RequestGuard:
    """JSON-only POST bodies (415) and the body size limit (413), before the app sees the request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reads_body = scope["method"] in BODY_METHODS or (scope["method"] == "PUT" and scope["path"] in BODY_PUTS)
        if reads_body and media_type(headers.get("content-type")) != JSON_MEDIA_TYPE:
            await send_error(
                send, 415, f"request bodies must be JSON: send the header 'Content-Type: {JSON_MEDIA_TYPE}'"
            )
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await send_error(send, 400, "the Content-Length header is not a number of bytes")
                return
            if int(length) > self.max_body_bytes:
                await send_error(send, 413, self.too_large())
                return
        try:
            body = await self.read_body(receive)
        except ClientGone:
            return
        if body is None:
            await send_error(send, 413, self.too_large())
            return
        await self.app(scope, replay(body, receive), send)

    def too_large(self) -> str:
        return (
            f"request body over the {self.max_body_bytes}-byte limit (max_body_bytes); send less, or start the "
            f"server with --limit max_body_bytes=N"
        )

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nobody to answer
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then passes on what the server sends (such as http.disconnect)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def api_key_dependency(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with `Authorization: Bearer API_KEY` (compared in constant
    time), else 401 with `WWW-Authenticate: Bearer`; without an API key it lets every request through."""
    if api_key is None:  # no key: nothing to check, and the OpenAPI schema declares no security scheme

        async def open_to_all() -> None:
            return None

        return open_to_all
    expected = api_key.encode("utf-8")
    bearer = HTTPBearer(auto_error=False, description="the server's API key (--api-key)")

    async def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        # the header's raw bytes (Starlette decodes headers as latin-1), so a non-ASCII key sent as UTF-8 matches
        given = credentials.credentials.encode("latin-1") if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(status_code=401, detail=WRONG_KEY, headers={"WWW-Authenticate": BEARER_SCHEME})

    return require_key


def install_guards(app: FastAPI, security: Security, max_body_bytes: int) -> None:
    """Add the middlewares to `app` (Host outermost, then CORS when configured, then RequestGuard).

    Starlette runs the middleware added last first, so RequestGuard is added first; add CountRequests after calling
    this so that it counts the guards' refusals too.
    """
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    if security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(security.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(security.trusted_hosts()), www_redirect=False)
