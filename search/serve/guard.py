"""Who may call the API and what they may send: pure ASGI middlewares configured from `Security` and `ServerLimits`.

- `HostGuard`: the Host header (port ignored, IPv6 brackets stripped) must be one of `Security.host_names()` (the
  bind address, loopback names when bound to loopback, and `--allowed-host` values; "*" accepts any), else 400.
  This stops DNS rebinding: a web page whose name resolves to 127.0.0.1 still sends its own name as Host.
- `RequestGuard`: with an API key, every route needs `Authorization: Bearer KEY` (401 otherwise), except the web
  page's static files (`public_paths`: they hold no data; the page asks for the key and sends it to the API); POST,
  PUT and PATCH bodies must be `application/json` (parameters such as `charset=utf-8` allowed; `application/*+json`
  and everything else get 415), so a cross-site page cannot send a "simple" text/plain or form request without a
  CORS preflight; bodies over `max_body_bytes` get 413 before any parsing, from Content-Length when given and by
  counting streamed (chunked) bytes otherwise, whatever the method. The body is buffered (it is at most
  `max_body_bytes`) and replayed to the app.
- CORS is off (no Access-Control-* headers) unless `Security.cors_origins` names origins.

`install_guards` adds them in that order (outermost first: Host, CORS, RequestGuard); a middleware added after it
(CountRequests) wraps them all and so counts their refusals. Refusals are JSON `{"detail": "..."}` and never echo
the body.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.serve.config import Security

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"
ANY_HOST = "*"
SHOWN_CHARS = 100  # a refused Host header is quoted up to this many characters


async def send_error(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer `{"detail": detail}` with `status` (ASCII-only JSON, so any header text can be quoted safely)."""
    body = json.dumps({"detail": detail}).encode("ascii")
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def host_name(value: str) -> str:
    """The host of a Host header or a configured name, lower-cased, without port, IPv6 brackets or trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        value = value[1:end] if end != -1 else value[1:]
    elif value.count(":") == 1:  # name:port or IPv4:port; a bare IPv6 address has several colons
        value = value.partition(":")[0]
    return value.rstrip(".")


def media_type(content_type: str | None) -> str | None:
    """`application/json` of `application/json; charset=utf-8`; None without a Content-Type."""
    if content_type is None:
        return None
    return content_type.partition(";")[0].strip().lower()


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


class HostGuard:
    """Refuse (400) requests whose Host header is not a name this server answers (DNS rebinding)."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.names = frozenset(host_name(name) for name in security.host_names())
        self.shown = ", ".join(security.host_names())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or ANY_HOST in self.names:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is None:
            await send_error(send, 400, f"no Host header: send the host this server answers ({self.shown})")
            return
        if host_name(header) not in self.names:
            host = host_name(header)[:SHOWN_CHARS]
            await send_error(
                send,
                400,
                f"Host header {host!r} is not one this server answers ({self.shown}); "
                f"to accept it, start the server with --allowed-host {host}",
            )
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class PublicPaths:
    """GET paths served without the API key: `exact` ones and those under `prefixes` (the web page's files)."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def matches(self, method: str, path: str) -> bool:
        if method not in ("GET", "HEAD") or "/../" in path or path.endswith("/.."):
            return False
        return path in self.exact or any(path.startswith(prefix) for prefix in self.prefixes)


class RequestGuard:
    """Bearer token (401), JSON-only bodies (415) and the body size limit (413), before the app sees the request."""

    def __init__(
        self, app: ASGIApp, api_key: str | None, max_body_bytes: int, public_paths: PublicPaths | None = None
    ) -> None:
        self.app = app
        self.api_key = api_key.encode("utf-8") if api_key is not None else None
        self.max_body_bytes = max_body_bytes
        self.public_paths = public_paths or PublicPaths()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if (
            self.api_key is not None
            and not self.public_paths.matches(scope["method"], scope["path"])
            and not self.authorized(headers.get("authorization"))
        ):
            await send_error(
                send,
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the key the server was "
                "started with (--api-key or SEMSEARCH_API_KEY)",
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        if scope["method"] in BODY_METHODS and media_type(headers.get("content-type")) != JSON_MEDIA_TYPE:
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

    def authorized(self, header: str | None) -> bool:
        """`Authorization: Bearer KEY` with the right key (compared in constant time, on the header's raw bytes)."""
        assert self.api_key is not None
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), self.api_key)

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


def install_guards(
    app: FastAPI, security: Security, max_body_bytes: int, public_paths: PublicPaths | None = None
) -> None:
    """Add the guards to `app` (Host outermost, then CORS when configured, then RequestGuard).

    Starlette runs the middleware added last first, so RequestGuard is added first; add CountRequests after calling
    this so that it counts the guards' refusals too.
    """
    app.add_middleware(RequestGuard, api_key=security.api_key, max_body_bytes=max_body_bytes, public_paths=public_paths)
    if security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(security.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(HostGuard, security=security)
