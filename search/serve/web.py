"""The web page: `/` (side-by-side search) and `/bench` (the recall-vs-latency map), static files from the package.

The page is plain HTML, CSS and JavaScript in `search/serve/static/` (no CDN, no build step, works offline) and only
calls the JSON API (`/pipelines`, `/compare`, `/bench/results`, `/metrics`). Every text from the corpus or the API
is inserted as text (`textContent`), never as HTML; the page responses also carry a Content-Security-Policy that
allows only this server's own scripts and styles (no inline script, no other origin), as a second line of defence.
The page and its files hold no data, so they are served without the API key (`PUBLIC_PATHS`); the page asks for
the key when the API answers 401 and sends it as a bearer token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from search.serve.guard import PublicPaths

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
PAGES = {"/": "index.html", "/bench": "bench.html"}
PUBLIC_PATHS = PublicPaths(exact=frozenset(PAGES), prefixes=(STATIC_PREFIX + "/",))

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag), so a new version of the page is never mixed with an old one
}


class PageFiles(StaticFiles):
    """StaticFiles with the page's security and caching headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def page_route(name: str) -> Callable[[], FileResponse]:
    """A route answering the page `name` (a function per page: FastAPI reads a route's arguments as parameters)."""

    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type="text/html", headers=PAGE_HEADERS)

    return page


def install_web(app: FastAPI) -> PublicPaths:
    """Serve the pages and their files on `app`; returns the paths that need no API key."""

    for route, name in PAGES.items():
        app.add_api_route(route, page_route(name), methods=["GET"], include_in_schema=False, name=f"page {name}")
    app.mount(STATIC_PREFIX, PageFiles(directory=STATIC_DIR), name="static")
    return PUBLIC_PATHS
