"""The web page: `/` (side-by-side search) and `/bench` (the recall-vs-latency map), static files from the package.

The page is plain HTML, CSS and JavaScript in `search/serve/static/` (no CDN, no build step, works offline) and only
calls the JSON API (`/pipelines`, `/compare`, `/bench/results`, `/evaluation`). Every text from the corpus or the
API is inserted as text (`textContent`), never as HTML; the page responses also carry a Content-Security-Policy that
allows only this server's own scripts and styles (no inline script, no other origin), as a second line of defence.
The page and its files hold no data, so they are served without the API key (plain Starlette routes and a mount,
outside the API's key dependency); the page asks for the key when the API answers 401 and sends it as a bearer
token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
PAGES = {"/": "index.html", "/bench": "bench.html"}

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


def page_route(name: str) -> Callable[[Request], FileResponse]:
    """A Starlette endpoint answering the page `name`."""

    def page(_: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type="text/html", headers=PAGE_HEADERS)

    return page


def install_web(app: FastAPI) -> None:
    """Serve the pages (GET only) and their files on `app`, outside the OpenAPI schema and the API key."""
    for route, name in PAGES.items():
        app.add_route(route, page_route(name), methods=["GET"], name=f"page {name}", include_in_schema=False)
    app.mount(STATIC_PREFIX, PageFiles(directory=STATIC_DIR), name="static")
