import pytest
from fastapi.testclient import TestClient

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import build_index_dir
from search.serve.app import ServerConfig, create_app


@pytest.fixture
def client(tmp_path, beir_dir):
    build_index_dir(
        load_beir(beir_dir), FakeEncoder(dim=256), IndexSpec("HNSW32"), tmp_path / "ix", show_progress=False
    )
    with TestClient(create_app(ServerConfig(index_dir=tmp_path / "ix"))) as test_client:
        yield test_client


def test_search_returns_k_hits_with_timings(client):
    response = client.post("/search", json={"query": "vitaminkey", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 5
    assert body["hits"][0]["id"] in {"vitamin-0", "vitamin-1"}
    assert set(body["hits"][0]) == {"id", "score", "title", "snippet"}
    assert body["hits"][0]["title"].startswith("vitamin study")
    assert set(body["timings"]) == {"tokenize_ms", "encode_ms", "search_ms", "rescore_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["search_ms"] >= 0
    assert body["timings"]["rescore_ms"] == 0.0  # HNSW32 has no exact re-ranking stage
    assert body["pipeline"] == "default"  # --index-dir serves one pipeline named default


def test_default_k_is_10(client):
    assert len(client.post("/search", json={"query": "heart"}).json()["hits"]) == 10


@pytest.mark.parametrize(
    "payload,message",
    [
        ({"query": "", "k": 5}, "query must not be empty or whitespace-only"),
        ({"query": "  \n\t ", "k": 5}, "query must not be empty or whitespace-only"),
        ({"query": "x", "k": 0}, "greater than or equal to 1"),
        ({"query": "x", "k": 1001}, "less than or equal to 1000"),
        ({"query": "x" * 10_001, "k": 5}, "at most 10000 characters"),
        ({"k": 5}, "Field required"),
        ({"query": 12, "k": 5}, "valid string"),
        ({"query": "x", "k": "many"}, "valid integer"),
    ],
)
def test_bad_input_is_422_with_a_message(client, payload, message):
    response = client.post("/search", json=payload)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_curl_style_form_content_type_is_read_as_json(client):
    body = b'{"query": "heartkey", "k": 3}'
    response = client.post("/search", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and len(response.json()["hits"]) == 3
    response = client.post("/search", content=b'{"query": "", "k": 3}')  # no content type at all
    assert response.status_code == 422 and "empty" in str(response.json()["detail"])


def test_malformed_json_is_422(client):
    response = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_health_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["pipeline"]["ntotal"] == 60
    assert health["pipeline"]["factory"] == "HNSW32" and health["pipeline"]["search_params"] == {"efSearch": 64}
    assert client.get("/docs").status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_startup_fails_clearly_on_a_missing_index(tmp_path):
    from indexes.store import IndexDirError

    with pytest.raises(IndexDirError, match="does not exist"):
        with TestClient(create_app(ServerConfig(index_dir=tmp_path / "nope"))):
            pass
