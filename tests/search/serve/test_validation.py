"""Strict request validation: non-finite numbers, invalid Unicode, invisible queries, strict k; 4xx that never
echo the raw input and never 500; an OpenAPI schema that documents the rules and the error responses."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from search.data.records import is_blank
from search.serve.app import create_app
from search.serve.config import ServerConfig, ServerLimits
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"
JSON = {"content-type": "application/json"}
ROUTES = ("/search", "/search/batch", "/compare")


@pytest.fixture
def client(index_dirs):
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url=LOCAL) as test_client:
        yield test_client


def raw_body(route: str, query: str = '"heart"', k: str = "3", extra: str = "") -> bytes:
    """A JSON body written by hand (so it can hold what json.dumps would not write)."""
    text = f'"queries": [{query}]' if route.endswith("batch") else f'"query": {query}'
    return f'{{{text}, "k": {k}{extra}}}'.encode()


def assert_safe_422(response, *absent: str) -> list[dict]:
    """A 422 whose body is JSON with {type, loc, msg} items, no input echoed, none of `absent` in its text."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail
    assert all(set(item) == {"type", "loc", "msg"} for item in detail)
    for text in absent:
        assert text not in response.text
    return detail


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "3.5", "true", '"3"'])
def test_non_integers_as_k_are_422_without_echo(client, route, token):
    detail = assert_safe_422(client.post(route, content=raw_body(route, k=token), headers=JSON), token)
    assert detail[0]["loc"] == ["body", "k"]
    assert detail[0]["type"] == "int_type"


@pytest.mark.parametrize("route", ROUTES)
def test_a_lone_surrogate_in_a_query_is_422(client, route):
    detail = assert_safe_422(client.post(route, content=raw_body(route, query='"zq\\ud800zq"'), headers=JSON), "zq")
    assert "query is not valid Unicode" in detail[0]["msg"]
    if route.endswith("batch"):
        body = b'{"queries": ["fine", "\\udfff"]}'
        assert "queries[1]" in assert_safe_422(client.post(route, content=body, headers=JSON))[0]["msg"]


def test_a_lone_surrogate_in_the_pipeline_name_is_422(client):
    body = b'{"query": "x", "pipeline": "t\\ud800"}'
    assert "not valid Unicode" in assert_safe_422(client.post("/search", content=body, headers=JSON))[0]["msg"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("query", ["\u200b", "\u200b\u200c\u200d", "\u2060\ufeff", " \u00a0\u3000", "\u2028\u2029\x00"])
def test_queries_of_invisible_characters_are_blank(client, route, query):
    body = {"queries": ["fine", query]} if route.endswith("batch") else {"query": query}
    detail = assert_safe_422(client.post(route, json=body))
    assert "query must not be empty or whitespace-only" in detail[0]["msg"]
    if route.endswith("batch"):
        assert "queries[1]" in detail[0]["msg"]


def test_blank_is_about_visible_characters():
    assert is_blank("")
    assert is_blank("\u200b \t\u2060\ufeff\u00ad")
    assert not is_blank("\u200ba")
    assert not is_blank("é")
    assert not is_blank("日本")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("k", [True, "10", 3.5, None])
def test_k_must_be_a_strict_integer(client, route, k):
    body = {"queries": ["heart"], "k": k} if route.endswith("batch") else {"query": "heart", "k": k}
    detail = assert_safe_422(client.post(route, json=body))
    assert detail[0]["loc"] == ["body", "k"]
    assert "valid integer" in detail[0]["msg"]
    body["k"] = 3
    assert client.post(route, json=body).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_k_with_a_zero_fraction_is_that_integer(client, route):
    """JSON Schema counts 3.0 as an integer (schemathesis sends it as valid data), so it is read as 3, not coerced
    from a float with a fraction."""
    body = {"queries": ["heart"], "k": 3.0} if route.endswith("batch") else {"query": "heart", "k": 3.0}
    response = client.post(route, json=body)
    assert response.status_code == 200, response.text
    hits = response.json()["results"][0]["hits"] if route.endswith("batch") else None
    if hits is not None:
        assert len(hits) == 3


def test_openapi_lists_the_loaded_pipelines(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("SearchRequest", "BatchSearchRequest"):
        assert schema[model]["properties"]["pipeline"]["enum"][:-1] == ["teacher", "compressed"]
    assert schema["CompareRequest"]["properties"]["pipelines"]["uniqueItems"] is True  # what the server refuses
    repeated = client.post("/compare", json={"query": "heart", "pipelines": ["compressed", "compressed"]})
    assert repeated.status_code == 422
    assert "must not repeat a name" in repeated.text


@pytest.mark.parametrize("route", ROUTES)
def test_malformed_json_is_4xx_without_echo(client, route):
    detail = assert_safe_422(client.post(route, content=b'{"query": "secret-text', headers=JSON), "secret-text")
    assert detail[0]["type"] == "json_invalid"
    assert "JSON decode error" in detail[0]["msg"]
    unparsable = [
        b'{"query": "\xff\xfe"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"query": "a", "k": ' + b"1" * 5000 + b"}",
    ]
    for body in unparsable:  # not UTF-8, nested past the parser's depth, an integer past Python's digit limit
        response = client.post(route, content=body, headers=JSON)
        assert response.status_code == 400
        assert "parsing the body" in response.json()["detail"]


def test_validation_errors_never_echo_the_input(client):
    long_query = "q" * 20_000
    detail = assert_safe_422(client.post("/search", json={"query": long_query, "k": 5}), long_query[:200])
    assert "at most 10000 characters" in detail[0]["msg"]
    assert_safe_422(client.post("/search/batch", json={"queries": "my secret string"}), "my secret string")


def test_limits_in_force_shape_validation_and_the_schema(index_dirs):
    limits = ServerLimits(max_query_chars=20, max_batch=3, max_k=7, max_batch_tokens=9, request_timeout_s=4.5)
    config = ServerConfig(index_dir=index_dirs["teacher"], limits=limits)
    with TestClient(create_app(config), base_url=LOCAL) as client:
        assert client.post("/search", json={"query": "x", "k": 8}).status_code == 422
        assert client.post("/search", json={"query": "x" * 21}).status_code == 422
        assert client.post("/search/batch", json={"queries": ["x"] * 4}).status_code == 422
        assert client.post("/search", json={"query": "x" * 20, "k": 7}).status_code == 200
        over = client.post("/search/batch", json={"queries": ["a b c d e f g h i j"] * 3})
        assert over.status_code == 422
        assert "max_batch_tokens=9" in over.text
        spec = client.get("/openapi.json").json()
        schemas = spec["components"]["schemas"]
    batch = spec["paths"]["/search/batch"]["post"]["description"]  # the bounds of one batch's cost, as in force
    assert "at most 9 tokens" in batch
    assert "4.5 s (request_timeout_s)" in batch
    assert "Up to 3 queries" in batch
    assert schemas["SearchRequest"]["properties"]["k"]["maximum"] == 7
    assert schemas["SearchRequest"]["properties"]["query"]["maxLength"] == 20
    assert schemas["BatchSearchRequest"]["properties"]["queries"]["maxItems"] == 3


def test_openapi_documents_rules_errors_and_content_types(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in ("SearchRequest", "CompareRequest"):
        query = schemas[model]["properties"]["query"]
        assert query["minLength"] == 1
        assert "visible character" in query["description"]
        assert "invisible" in query["description"]
    queries = schemas["BatchSearchRequest"]["properties"]["queries"]
    assert queries["items"]["minLength"] == 1
    assert "visible character" in queries["description"]
    assert schemas["SearchRequest"]["properties"]["k"]["type"] == "integer"
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    assert schemas["ErrorOut"]["properties"]["detail"]["type"] == "string"
    expected = {
        ("/search", "post"): {400, 401, 413, 415, 422, 503, 504},
        ("/search/batch", "post"): {400, 401, 413, 415, 422, 503, 504},
        ("/compare", "post"): {400, 401, 413, 415, 422, 503, 504},
        ("/pipelines", "get"): {400, 401, 503},
        ("/health", "get"): {400},
        ("/ready", "get"): {400, 503},
        ("/evaluation", "get"): {400, 401, 404, 409, 500, 503},
        ("/evaluation", "post"): {400, 401, 413, 415, 503},
        ("/metrics", "get"): {400, 401},
    }
    for (path, method), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        documented = {int(status) for status in responses if status != "200" and not status.startswith("2")}
        assert statuses <= documented, (path, statuses - documented)
        for status in statuses:
            content = responses[str(status)]["content"]["application/json"]["schema"]
            expected_ref = "ValidationErrorOut" if status == 422 else "ErrorOut"
            assert content == {"$ref": f"#/components/schemas/{expected_ref}"}, (path, status)
            assert responses[str(status)]["description"]
        assert responses["400"]["content"]["text/plain"] == {"schema": {"type": "string"}}  # the Host check's answer
    assert "401" not in spec["paths"]["/health"]["get"]["responses"]  # liveness needs no key
    assert error_ref == {"$ref": "#/components/schemas/ErrorOut"}
    prometheus = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(prometheus) == ["text/plain"]
    search_422 = spec["paths"]["/search"]["post"]["responses"]["422"]
    assert "HTTPValidationError" not in json.dumps(search_422)
