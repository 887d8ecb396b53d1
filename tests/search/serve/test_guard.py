"""Safe by default: JSON-only bodies, body size limit before parsing, Host check, bearer token, CORS off unless set.

The guards are tested as plain ASGI apps (to see what they read of a body) and through the real app factory.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from search.serve.app import create_app
from search.serve.config import Security, ServerConfig, ServerLimits
from search.serve.guard import RequestGuard
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"
KEY = "s3cret-key"
GET_ROUTES = ("/pipelines", "/metrics", "/evaluation", "/bench/results", "/docs", "/openapi.json")


def serve(index_dirs, base_url: str = LOCAL, **config) -> TestClient:
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    return TestClient(create_app(ServerConfig(pipelines=sources, **config)), base_url=base_url)


# --- the guards as plain ASGI apps ---------------------------------------------------------------------------------


class Inner:
    """An app that records what it was called with and answers 200 with the body it read."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""
        self.after_body: dict | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        message = await receive()
        self.body = message.get("body", b"")
        assert not message.get("more_body", False)
        self.after_body = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run_asgi(
    app, headers: dict[str, str], chunks: list[bytes], method: str = "POST", path: str = "/search"
) -> tuple[int, dict, int]:
    """Send a request made of `chunks`; the status, the JSON body, and how many chunks the app pulled."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(key.lower().encode(), value.encode()) for key, value in headers.items()],
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], (json.loads(body) if sent[0]["status"] != 200 else {}), pulled


JSON = {"content-type": "application/json"}


def test_a_content_length_over_the_limit_is_413_before_reading_the_body():
    inner = Inner()
    guard = RequestGuard(inner, max_body_bytes=1000)
    status, body, pulled = run_asgi(guard, {**JSON, "content-length": "1001"}, [b"this is not JSON {"] * 100)
    assert status == 413
    assert pulled == 0
    assert inner.calls == 0
    assert "1000-byte limit" in body["detail"]
    assert "max_body_bytes" in body["detail"]
    assert "not JSON" not in json.dumps(body)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(method):
    inner = Inner()
    guard = RequestGuard(inner, max_body_bytes=250)
    status, body, pulled = run_asgi(guard, JSON, [b"x" * 100] * 10, method=method)  # chunked: no Content-Length
    assert status == 413
    assert pulled == 3
    assert inner.calls == 0
    assert "250-byte limit" in body["detail"]


def test_a_bad_content_length_is_400():
    status, body, pulled = run_asgi(RequestGuard(Inner(), 100), {**JSON, "content-length": "-5"}, [b"{}"])
    assert status == 400
    assert "Content-Length" in body["detail"]
    assert pulled == 0


def test_a_body_within_the_limit_is_replayed_whole_then_the_server_messages_pass_through():
    inner = Inner()
    guard = RequestGuard(inner, max_body_bytes=250)
    status, _, pulled = run_asgi(guard, JSON, [b"a" * 100, b"b" * 100, b"c" * 50])
    assert status == 200
    assert pulled == 3
    assert inner.calls == 1
    assert inner.body == b"a" * 100 + b"b" * 100 + b"c" * 50
    assert inner.after_body == {"type": "http.disconnect"}  # what the server sends next (the client left)


@pytest.mark.parametrize(
    "content_type,status",
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("text/plain", 415),
        ("text/plain; charset=utf-8", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/merge-patch+json", 415),
        (None, 415),
    ],
)
def test_only_application_json_bodies(content_type, status):
    headers = {} if content_type is None else {"content-type": content_type}
    got, body, _ = run_asgi(RequestGuard(Inner(), max_body_bytes=100), headers, [b"{}"])
    assert got == status
    if status == 415:
        assert "Content-Type: application/json" in body["detail"]


def test_only_post_and_put_bodies_must_be_json():
    """The API reads POST and PUT bodies only: another method goes on to routing (405 for an undeclared one), still
    under the size limit."""
    status, _, _ = run_asgi(RequestGuard(Inner(), max_body_bytes=100), {}, [b"x"], method="PUT", path="/documents")
    assert status == 415
    for method in ("PUT", "PATCH", "DELETE"):
        status, _, _ = run_asgi(RequestGuard(Inner(), max_body_bytes=100), {}, [b"x"], method=method)
        assert status == 200, method
        status, _, _ = run_asgi(RequestGuard(Inner(), max_body_bytes=100), {}, [b"x" * 101], method=method)
        assert status == 413, method


def test_an_undeclared_method_is_405_with_every_declared_method_in_allow(index_dirs):
    with serve(index_dirs) as client:
        for method, path, allow in (
            ("OPTIONS", "/evaluation", "GET, POST"),  # two routes share the path: both methods are named
            ("PUT", "/health", "GET"),
            ("DELETE", "/search", "POST"),
            ("PUT", "/metrics", "GET"),
        ):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allow, (method, path)
        assert client.get("/no-such-route").status_code == 404  # other HTTP errors keep their answers


def test_trusted_hosts_are_the_names_a_host_header_carries():
    assert Security().trusted_hosts() == ("127.0.0.1", "localhost", "[::1]")
    assert Security(host="::1").trusted_hosts() == ("[::1]", "localhost", "127.0.0.1")
    assert Security(allowed_hosts=("Search.Example", "*.corp.example")).trusted_hosts()[-2:] == (
        "search.example",
        "*.corp.example",
    )
    public = Security(host="10.1.2.3", api_key=KEY)
    assert public.trusted_hosts() == ("10.1.2.3",)
    for bad in ("a*b", "*example.org", "**"):
        with pytest.raises(ValueError, match=r"not a host name: give a name, '\*' \(any host\) or '\*.example.org'"):
            Security(allowed_hosts=(bad,))


def test_the_host_check_answers_its_names_only(index_dirs):
    def status(host: str | None, security: Security) -> int:
        with serve(index_dirs, security=security) as client:
            headers = {} if host is None else {"host": host}
            return client.get("/health", headers=headers).status_code

    loopback = Security()
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        assert status(host, loopback) == 200, host
    for host in ("evil.example:8000", "127.0.0.1.evil.example", "0.0.0.0", "::1", ""):
        assert status(host, loopback) == 400, host
    assert status("search.example:443", Security(allowed_hosts=("search.example",))) == 200
    assert status("a.corp.example", Security(allowed_hosts=("*.corp.example",))) == 200
    assert status("corp.example.evil", Security(allowed_hosts=("*.corp.example",))) == 400
    assert status("anything", Security(allowed_hosts=("*",))) == 200
    public = Security(host="10.1.2.3", api_key=KEY)
    assert status("10.1.2.3:8000", public) == 200
    assert status("localhost", public) == 400


# --- through the app ------------------------------------------------------------------------------------------------


def test_cross_site_simple_posts_are_415_and_counted(index_dirs):
    body = b'{"query": "heart", "k": 3}'
    with serve(index_dirs) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"):
            response = client.post("/search", content=body, headers={"content-type": content_type})
            assert response.status_code == 415
            assert "Content-Type: application/json" in response.json()["detail"]
        response = client.post("/search/batch", data={"queries": "heart"})  # a real HTML form post
        assert response.status_code == 415
        assert client.post("/search", content=body, headers={"content-type": "application/json"}).status_code == 200
        metrics = client.get("/metrics").text
    assert 'semsearch_errors_total{route="/search",status="415"} 3.0' in metrics


def test_oversized_bodies_are_413_and_name_the_limit(index_dirs):
    with serve(index_dirs, limits=ServerLimits(max_body_bytes=200)) as client:
        response = client.post(
            "/search", content=b"[" + b"1," * 500 + b"1]", headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert "200-byte limit" in response.json()["detail"]
        assert "1,1" not in response.text
        response = client.post(
            "/search", content=b"\xff not json at all" * 50, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413  # refused before parsing: not a 422 about JSON
        assert client.post("/search", json={"query": "heart", "k": 3}).status_code == 200


def test_wrong_host_is_400_unless_allowed(index_dirs):
    with serve(index_dirs, base_url="http://evil.example:8000") as client:
        response = client.get("/health")
        assert response.status_code == 400
        assert response.text == "Invalid host header"
        assert client.post("/search", json={"query": "heart"}).status_code == 400
        assert client.get("/").status_code == 400
        assert client.get("/static/common.js").status_code == 400
    with serve(
        index_dirs, base_url="http://evil.example:8000", security=Security(allowed_hosts=("evil.example",))
    ) as client:
        assert client.get("/health").status_code == 200
    with serve(index_dirs, base_url="http://[::1]:8000") as client:
        assert client.get("/health").status_code == 200


def test_api_key_guards_every_api_route(index_dirs):
    with serve(index_dirs, security=Security(api_key=KEY)) as client:
        for path in ("/health", "/ready"):  # liveness and readiness hold no data
            assert client.get(path).status_code == 200, path
        for path in GET_ROUTES:
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"authorization": KEY},
                {"authorization": f"Basic {KEY}"},
            ):
                response = client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "Authorization: Bearer" in response.text
            expected = 404 if path in ("/evaluation", "/bench/results") else 200  # none run, no bench folder
            assert client.get(path, headers={"authorization": f"Bearer {KEY}"}).status_code == expected, path
        for route in ("/search", "/compare", "/evaluation"):
            refused = client.post(route, json={"query": "heart"})
            assert refused.status_code == 401, route
            assert refused.headers["www-authenticate"] == "Bearer", route
        ok = client.post("/search", json={"query": "heart"}, headers={"authorization": f"bearer {KEY}"})
        assert ok.status_code == 200
        metrics = client.get("/metrics", headers={"authorization": f"Bearer {KEY}"}).text
    assert 'semsearch_errors_total{route="/search",status="401"} 1.0' in metrics  # refusals are counted


def test_the_schema_declares_the_bearer_scheme_only_when_the_server_has_a_key(index_dirs):
    with serve(index_dirs, security=Security(api_key=KEY)) as client:
        schema = client.get("/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/search"]["post"]["security"] == [{"HTTPBearer": []}]
    with serve(index_dirs) as client:  # no key: a client that sends none is right, and the schema says so
        schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema["components"]
    assert all("security" not in op for methods in schema["paths"].values() for op in methods.values())


def test_a_non_ascii_key_is_compared_on_its_bytes(index_dirs):
    key = "clé-secrète"
    with serve(index_dirs, security=Security(api_key=key)) as client:
        assert client.get("/pipelines", headers={"authorization": f"Bearer {key}".encode()}).status_code == 200
        assert client.get("/pipelines", headers={"authorization": "Bearer cle-secrete"}).status_code == 401


def test_non_loopback_binding_needs_a_key():
    with pytest.raises(ValueError, match="needs an API key"):
        Security(host="0.0.0.0")
    assert Security(host="0.0.0.0", api_key=KEY).host_names() == ("0.0.0.0",)


def test_cors_is_off_by_default_and_exact_when_configured(index_dirs):
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    with serve(index_dirs) as client:
        response = client.get("/health", headers={"origin": "https://app.example"})
        assert response.status_code == 200
        assert not any(h.startswith("access-control") for h in response.headers)
        response = client.options("/search", headers=preflight)
        assert not any(h.startswith("access-control") for h in response.headers)
    with serve(index_dirs, security=Security(cors_origins=("https://app.example",), api_key=KEY)) as client:
        response = client.options("/search", headers={**preflight, "access-control-request-headers": "authorization"})
        assert response.status_code == 200  # the preflight carries no key; CORS answers it
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        response = client.get("/health", headers={"origin": "https://app.example", "authorization": f"Bearer {KEY}"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        response = client.get("/health", headers={"origin": "https://other.example", "authorization": f"Bearer {KEY}"})
        assert "access-control-allow-origin" not in response.headers
        assert client.options("/search", headers={**preflight, "origin": "https://other.example"}).status_code == 400
