"""The HTTP API: /search, /search/batch, /compare, /pipelines, /evaluation, /metrics, /health, /ready, through the
real app factory."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

import search.serve.app
from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import Pipeline, build_index_dir
from search.serve.app import ServerConfig, create_app
from search.serve.config import ServerLimits
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"  # TestClient's default Host, testserver, is not one the server answers
MAX_BATCH = ServerLimits().max_batch

TIMING_KEYS = {"tokenize_ms", "encode_ms", "search_ms", "rescore_ms", "total_ms"}


def make_config(index_dirs, beir_dir, **options) -> ServerConfig:
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    return ServerConfig(pipelines=sources, evaluation_dataset=str(beir_dir), **options)


@pytest.fixture
def client(index_dirs, beir_dir):
    """Two pipelines: teacher (Flat, the default and the reference) and compressed (PQ4x4,RFlat)."""
    with TestClient(create_app(make_config(index_dirs, beir_dir)), base_url=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def hnsw_client(tmp_path, beir_dir):
    """One pipeline from --index-dir (served as "default"): HNSW32 over 256-d fake vectors."""
    build_index_dir(
        load_beir(beir_dir), FakeEncoder(dim=256), IndexSpec("HNSW32"), tmp_path / "ix", show_progress=False
    )
    with TestClient(create_app(ServerConfig(index_dir=tmp_path / "ix")), base_url=LOCAL) as test_client:
        yield test_client


def ids(hits) -> list[str]:
    return [hit["id"] for hit in hits]


def test_search_returns_k_hits_with_timings(hnsw_client):
    response = hnsw_client.post("/search", json={"query": "vitaminkey", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["pipeline"] == "default"
    assert len(body["hits"]) == 5
    assert body["hits"][0]["id"] in {"vitamin-0", "vitamin-1"}  # the two documents holding the rare query word
    assert set(body["hits"][0]) == {"id", "score", "title", "snippet"}
    assert body["hits"][0]["title"].startswith("vitamin study")
    assert set(body["timings"]) == TIMING_KEYS
    assert body["timings"]["rescore_ms"] == 0.0  # HNSW: no re-ranking
    assert len(hnsw_client.post("/search", json={"query": "heart"}).json()["hits"]) == 10  # default k


def test_search_defaults_to_the_first_pipeline_and_serves_faiss_own_results(client, index_dirs):
    default = client.post("/search", json={"query": "vitaminkey", "k": 5}).json()
    assert default["pipeline"] == "teacher"
    assert default["timings"]["rescore_ms"] == 0.0  # Flat: no re-ranking
    compressed = client.post("/search", json={"query": "vitaminkey", "k": 5, "pipeline": "compressed"}).json()
    assert compressed["pipeline"] == "compressed"
    assert compressed["timings"]["rescore_ms"] > 0.0
    t = compressed["timings"]
    assert t["total_ms"] >= t["tokenize_ms"] + t["encode_ms"] + t["search_ms"] + t["rescore_ms"] - 1e-6
    pipeline = Pipeline.load(index_dirs["compressed"])  # FAISS's own refine search of the stored index
    _, positions = pipeline.stored.index.search(pipeline.encode_queries(["vitaminkey"]), 5)
    assert ids(compressed["hits"]) == pipeline.ids_of(positions)[0]


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
def test_bad_search_is_422_with_a_message(hnsw_client, payload, message):
    response = hnsw_client.post("/search", json=payload)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


@pytest.mark.parametrize("route", ["/search", "/search/batch", "/compare"])
def test_bad_json_blank_query_and_k_are_422(client, route):
    bad_json = client.post(route, content=b'{"query": ', headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    assert "json" in str(bad_json.json()["detail"]).lower()
    body = {"queries": [" "]} if route.endswith("batch") else {"query": " "}
    assert "empty or whitespace-only" in str(client.post(route, json=body).json()["detail"])
    body = {"queries": ["x"], "k": 0} if route.endswith("batch") else {"query": "x", "k": 0}
    assert client.post(route, json=body).status_code == 422


def test_only_json_bodies_are_read(hnsw_client):
    body = b'{"query": "heartkey", "k": 3}'
    response = hnsw_client.post("/search", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]
    assert hnsw_client.post("/search", content=body).status_code == 415  # no content type at all
    response = hnsw_client.post("/search", content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert len(response.json()["hits"]) == 3


@pytest.mark.parametrize("route", ["/search", "/search/batch"])
def test_unknown_pipeline_is_422_listing_the_loaded_ones(client, route):
    body = {"queries": ["x"]} if route.endswith("batch") else {"query": "x"}
    response = client.post(route, json={**body, "pipeline": "nope"})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "value_error",
            "loc": ["body", "pipeline"],
            "msg": "unknown pipeline 'nope'; loaded: teacher, compressed",
        }
    ]


def test_batch_matches_single_searches(client):
    queries = ["vitaminkey", "heart artery", "brain memory synapse"]
    body = client.post("/search/batch", json={"queries": queries, "k": 4, "pipeline": "compressed"}).json()
    assert body["pipeline"] == "compressed"
    assert set(body["timings"]) == TIMING_KEYS
    assert [item["query"] for item in body["results"]] == queries
    for item in body["results"]:
        single = client.post("/search", json={"query": item["query"], "k": 4, "pipeline": "compressed"}).json()
        assert ids(item["hits"]) == ids(single["hits"])


@pytest.mark.parametrize(
    "payload,message",
    [
        ({"queries": ["x"] * (MAX_BATCH + 1)}, "at most 256 items"),
        ({"queries": []}, "at least 1 item"),
        ({"queries": ["fine", "  "]}, "query must not be empty or whitespace-only: queries[1]"),
        ({"queries": ["x"], "k": 0}, "greater than or equal to 1"),
        ({"queries": "x"}, "valid list"),
        ({"queries": ["x" * 10_001]}, "at most 10000 characters"),
    ],
)
def test_bad_batch_is_422(client, payload, message):
    response = client.post("/search/batch", json=payload)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_full_batch_of_256_is_accepted(client):
    response = client.post("/search/batch", json={"queries": [f"heart {i}" for i in range(MAX_BATCH)], "k": 1})
    assert response.status_code == 200
    assert len(response.json()["results"]) == MAX_BATCH


def test_compare_overlap_equals_a_hand_computation(client):
    k = 10
    search = {
        name: ids(client.post("/search", json={"query": "heart artery", "k": k, "pipeline": name}).json()["hits"])
        for name in ("teacher", "compressed")
    }
    reference, other = search["teacher"], search["compressed"]
    body = client.post("/compare", json={"query": "heart artery", "k": k}).json()
    assert body["reference"] == "teacher"
    assert body["k"] == k
    assert body["query"] == "heart artery"
    teacher, compressed = body["pipelines"]["teacher"], body["pipelines"]["compressed"]
    assert ids(teacher["hits"]) == reference
    assert ids(compressed["hits"]) == other
    assert teacher["recall@k_vs_teacher"] == 1.0
    assert teacher["missing"] == teacher["extra"] == []
    assert compressed["recall@k_vs_teacher"] == pytest.approx(len(set(reference) & set(other)) / k)
    assert compressed["missing"] == [d for d in reference if d not in other]
    assert compressed["extra"] == [d for d in other if d not in reference]
    assert set(compressed["timings"]) == TIMING_KEYS
    # Each hit carries its rank in the reference's top-k (what the web page and the CLI link hits by).
    assert [hit["reference_rank"] for hit in compressed["hits"]] == [
        reference.index(d) + 1 if d in reference else None for d in other
    ]
    assert [hit["reference_rank"] for hit in teacher["hits"]] == list(range(1, k + 1))
    assert teacher["speedup_vs_reference"] == pytest.approx(1.0)
    ratio = teacher["timings"]["total_ms"] / max(compressed["timings"]["total_ms"], 1e-3)
    assert compressed["speedup_vs_reference"] == pytest.approx(ratio, rel=1e-6)


def test_compare_a_chosen_subset_always_answers_the_reference(client):
    body = client.post("/compare", json={"query": "heart artery", "k": 5, "pipelines": ["compressed"]}).json()
    assert list(body["pipelines"]) == ["teacher", "compressed"]
    body = client.post("/compare", json={"query": "heart artery", "k": 5, "pipelines": ["teacher"]}).json()
    assert list(body["pipelines"]) == ["teacher"]
    for bad, words in (
        (["nope"], "unknown pipeline 'nope'; loaded: teacher, compressed"),
        (["teacher", "teacher"], "must not repeat"),
        ([], "at least 1"),
    ):
        answer = client.post("/compare", json={"query": "heart artery", "k": 5, "pipelines": bad})
        assert answer.status_code == 422, answer.text
        assert words in answer.text, answer.text


def test_reference_option_changes_what_compare_measures_against(index_dirs, beir_dir):
    with TestClient(create_app(make_config(index_dirs, beir_dir, reference="compressed")), base_url=LOCAL) as client:
        body = client.post("/compare", json={"query": "viral vaccine", "k": 5}).json()
        assert body["reference"] == "compressed"
        assert body["pipelines"]["compressed"]["recall@k_vs_teacher"] == 1.0
        assert client.get("/pipelines").json()["reference"] == "compressed"


def test_pipelines_describes_each(client, index_dirs):
    body = client.get("/pipelines").json()
    assert body["default"] == "teacher"
    assert body["reference"] == "teacher"
    assert list(body["pipelines"]) == ["teacher", "compressed"]
    small = body["pipelines"]["compressed"]
    assert small["factory"] == "PQ4x4,RFlat"
    assert small["search_params"] == {"k_factor": 4}
    memory = small["index_memory"]  # read whole (no --mmap): resident = the file
    assert (
        memory["on_disk_bytes"] == memory["resident_bytes"] == (index_dirs["compressed"] / "index.faiss").stat().st_size
    )
    assert memory["memory_mapped"] is False
    assert small["engine"] == {"name": "local"}
    assert small["precision"] == "fp32"
    assert small["mode"] == "symmetric"
    assert small["encoder"] == "fake"
    assert small["ntotal"] == 60
    assert small["dim"] == 32
    assert small["bytes_per_vector"] == pytest.approx(2 + 32 * 4)
    assert small["is_reference"] is False
    assert body["pipelines"]["teacher"]["is_reference"] is True
    for key in ("doc_encoder", "model_bytes", "build", "index_dir"):
        assert key in small


def test_health_is_one_short_line_and_ready_follows_the_pipelines(index_dirs):
    app = create_app(ServerConfig(index_dir=index_dirs["teacher"]))
    with TestClient(app, base_url=LOCAL) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert len(health.content) < 40
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
    outside = TestClient(app, base_url=LOCAL)  # no lifespan: nothing loaded
    assert outside.get("/health").json() == {"status": "ok"}
    not_ready = outside.get("/ready")
    assert not_ready.status_code == 503
    assert "not loaded" in not_ready.json()["detail"]


def test_openapi_and_docs(hnsw_client):
    assert hnsw_client.get("/docs").status_code == 200
    paths = hnsw_client.get("/openapi.json").json()["paths"]
    assert {"/search", "/evaluation", "/metrics", "/health", "/ready"} <= set(paths)
    assert "/metrics/prometheus" not in paths
    assert "/metrics/refresh" not in paths


def test_metrics_is_prometheus_text(client):
    client.post("/search", json={"query": "heart", "k": 3})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE semsearch_requests_total counter" in response.text
    assert 'semsearch_requests_total{route="/search"} 1.0' in response.text
    openmetrics = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def finished_evaluation(client: TestClient, timeout_s: float = 60.0):
    """GET /evaluation until the background job has finished (202 while it runs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/evaluation")
        if response.status_code != 202:
            return response
        body = response.json()
        assert body["status"] == "running"
        assert body["progress"]["done"] <= body["progress"]["total"]
        assert response.headers["location"] == "/evaluation"
        assert time.monotonic() < deadline, "the evaluation job did not finish"
        time.sleep(0.05)


def test_a_get_never_starts_the_evaluation_a_post_does(client, monkeypatch):
    runs = []
    original = search.serve.app.evaluate_side_by_side
    monkeypatch.setattr(search.serve.app, "evaluate_side_by_side", lambda *a: runs.append(1) or original(*a))
    for _ in range(3):
        for path in ("/evaluation", "/metrics", "/health", "/ready", "/pipelines"):
            client.get(path)
    never = client.get("/evaluation")
    assert never.status_code == 404
    assert "POST /evaluation" in never.json()["detail"]
    assert runs == []
    started = client.post("/evaluation", json={})
    assert started.status_code == 202
    assert started.json()["status"] == "running"
    assert started.headers["location"] == "/evaluation"
    done = finished_evaluation(client)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["reference"] == "teacher"
    assert body["split"] == "test"
    assert runs == [1]
    assert set(body["pipelines"]) == {"teacher", "compressed"}
    assert body["compute_seconds"] > 0
    for name in ("teacher", "compressed"):
        got = body["pipelines"][name]
        for stage in ("encode", "search", "total"):
            assert got[f"{stage}_ms_p50"] <= got[f"{stage}_ms_p95"] <= got[f"{stage}_ms_p99"]
    second = client.get("/evaluation").json()
    assert second["computed_at"] == body["computed_at"]
    assert second["pipelines"] == body["pipelines"]
    assert runs == [1]
    assert client.post("/evaluation", json={}).status_code == 202  # a new run
    assert finished_evaluation(client).json()["pipelines"].keys() == body["pipelines"].keys()
    assert runs == [1, 1]


def test_evaluation_on_startup_starts_the_job_before_any_call(index_dirs, beir_dir, monkeypatch):
    runs = []
    original = search.serve.app.evaluate_side_by_side
    monkeypatch.setattr(search.serve.app, "evaluate_side_by_side", lambda *a: runs.append(1) or original(*a))
    for on_startup, expected in ((False, []), (True, [1])):
        config = make_config(index_dirs, beir_dir, evaluate_on_startup=on_startup)
        with TestClient(create_app(config), base_url=LOCAL) as client:
            deadline = time.monotonic() + 30
            while "semsearch_evaluation_running 1.0" in client.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert runs == expected  # no POST /evaluation yet
            assert finished_evaluation(client).status_code == (200 if on_startup else 404)
        runs.clear()


def test_evaluation_unavailable_says_why(write_beir, index_dirs, beir_dir, tmp_path):
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    # the path recorded at build time
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url=LOCAL) as client:
        client.post("/evaluation", json={})
        assert finished_evaluation(client).status_code == 200
    moved = beir_dir.rename(beir_dir.with_name("moved"))  # now neither the recorded path nor the name "tiny" resolves
    cases = [
        (ServerConfig(pipelines=sources), 404, "cannot load dataset", "--evaluation-dataset"),
        (
            ServerConfig(pipelines=sources, evaluation_dataset=str(moved), evaluation_split="dev"),
            404,
            "no qrels",
            "split",
        ),
        (
            ServerConfig(pipelines=sources, evaluation_dataset=str(write_beir(tmp_path / "other", seed=9))),
            409,
            "corpus",
            "built on",
        ),
    ]
    for config, status, message, hint in cases:
        with TestClient(create_app(config), base_url=LOCAL) as client:
            assert client.post("/evaluation", json={}).status_code == 202
            response = finished_evaluation(client)
            assert response.status_code == status, response.text
            assert message in response.json()["detail"], response.text
            assert hint in response.json()["detail"]
            assert client.post("/search", json={"query": "x"}).status_code == 200  # the server still serves


def test_workers_threads_sets_the_thread_pool(index_dirs, beir_dir):
    import anyio.to_thread

    async def pool_size() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with TestClient(create_app(make_config(index_dirs, beir_dir, workers_threads=3)), base_url=LOCAL) as client:
        assert client.portal.call(pool_size) == 3
        assert client.post("/search", json={"query": "x"}).status_code == 200


def test_config_validation(tmp_path, index_dirs, beir_dir):
    with pytest.raises(ValueError, match="no pipelines to serve"):
        ServerConfig()
    with pytest.raises(ValueError, match="'a' is used 2 times"):
        ServerConfig(pipelines=(PipelineSource("a", tmp_path), PipelineSource("a", tmp_path)))
    with pytest.raises(ValueError, match="'default' is used 2 times"):
        ServerConfig(index_dir=tmp_path, pipelines=(PipelineSource("default", tmp_path),))
    for name in ("threads", "workers_threads"):
        with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
            ServerConfig(index_dir=tmp_path, **{name: 0})
    with pytest.raises(ValueError, match="reference pipeline 'x' is not loaded; loaded: teacher, compressed"):
        with TestClient(create_app(make_config(index_dirs, beir_dir, reference="x")), base_url=LOCAL):
            pass


def test_index_dir_and_named_pipelines_together(index_dirs):
    config = ServerConfig(
        index_dir=index_dirs["teacher"], pipelines=(PipelineSource("compressed", index_dirs["compressed"]),)
    )
    with TestClient(create_app(config), base_url=LOCAL) as client:
        assert list(client.get("/pipelines").json()["pipelines"]) == ["default", "compressed"]
        assert client.post("/compare", json={"query": "x", "k": 3}).json()["reference"] == "default"


def test_startup_fails_clearly_on_a_missing_index(tmp_path):
    from indexes.store import IndexDirError

    with pytest.raises(IndexDirError, match="does not exist"):
        with TestClient(create_app(ServerConfig(index_dir=tmp_path / "nope")), base_url=LOCAL):
            pass


def leaves(value, path=()):
    """Every (key path, scalar) of a JSON value."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from leaves(child, (*path, i))
    else:
        yield path, value


def test_no_server_paths_in_pipelines(client, index_dirs, tmp_path):
    for route in ("/pipelines",):
        body = client.get(route).json()
        for path, value in leaves(body):
            assert "path" not in path, (route, path)
            assert "dataset_path" not in path, (route, path)
            if isinstance(value, str):
                assert not value.startswith(("/", "~")), (route, path, value)
                assert str(tmp_path) not in value, (route, path, value)
        assert str(tmp_path) not in json.dumps(body)
    described = client.get("/pipelines").json()["pipelines"]
    assert {name: item["index_dir"] for name, item in described.items()} == {
        name: path.name for name, path in index_dirs.items()
    }


def test_mmap_server_maps_its_indexes_and_searches_the_same(index_dirs, beir_dir, client):
    want = client.post("/search", json={"query": "heart artery", "k": 5, "pipeline": "compressed"}).json()["hits"]
    with TestClient(create_app(make_config(index_dirs, beir_dir, mmap=True)), base_url=LOCAL) as mapped:
        got = mapped.post("/search", json={"query": "heart artery", "k": 5, "pipeline": "compressed"}).json()["hits"]
        memory = mapped.get("/pipelines").json()["pipelines"]["compressed"]["index_memory"]
    assert [h["id"] for h in got] == [h["id"] for h in want]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-6)
    assert memory["memory_mapped"] is True
    assert memory["on_disk_bytes"] == (index_dirs["compressed"] / "index.faiss").stat().st_size


@pytest.fixture
def rabitq_client(tmp_path, beir_dir):
    """One-bit codes rescored from the vector file (oversample 4 by default), and an SQ8 index with no vector file."""
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("RaBitQ"), tmp_path / "rabitq", show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("SQ8", vectors="none"), tmp_path / "sq8",
                    show_progress=False)  # fmt: skip
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), tmp_path / "flat", show_progress=False)
    sources = tuple(PipelineSource(n, tmp_path / n) for n in ("rabitq", "sq8", "flat"))
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url=LOCAL) as test_client:
        yield test_client


def test_oversample_per_request_rescores_from_the_vector_file(rabitq_client):
    described = rabitq_client.get("/pipelines").json()["pipelines"]["rabitq"]
    assert described["search_params"]["oversample"] == 4 and described["rescore"] == "vector_file"
    assert described["vector_file"]["dtype"] == "fp16"
    want = rabitq_client.post("/search", json={"query": "heart artery", "k": 5, "pipeline": "flat"}).json()["hits"]
    found = rabitq_client.post(
        "/search", json={"query": "heart artery", "k": 5, "oversample": 12, "pipeline": "rabitq"}
    )
    assert found.status_code == 200
    body = found.json()
    assert body["timings"]["rescore_ms"] > 0
    # 60 documents, 5 x 12 candidates: every document rescored from fp16 rows, so the exact ranking (up to near-ties)
    got = body["hits"]
    assert ids(got) == ids(want) or all(abs(a["score"] - b["score"]) < 2e-3 for a, b in zip(got, want, strict=True))
    for a, b in zip(got, want, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=2e-3)  # fp16 rows: scores within fp16 rounding
    batch = rabitq_client.post("/search/batch", json={"queries": ["heart artery"], "k": 5, "oversample": 12,
                                                      "pipeline": "rabitq"})  # fmt: skip
    assert ids(batch.json()["results"][0]["hits"]) == ids(got)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"pipeline": "sq8", "oversample": 4}, "which this index does not keep"),
        ({"pipeline": "rabitq", "oversample": 0.5}, "greater than or equal to 1"),
        ({"pipeline": "rabitq", "oversample": 101}, "less than or equal to 100"),
        ({"pipeline": "rabitq", "oversample": "4"}, "valid number"),
        ({"pipeline": "rabitq", "oversample": True}, "valid number"),
    ],
)
def test_an_oversample_the_pipeline_cannot_take_is_422_naming_why(rabitq_client, payload, message):
    for route, body in (
        ("/search", {"query": "heart", **payload}),
        ("/search/batch", {"queries": ["heart"], **payload}),
    ):
        response = rabitq_client.post(route, json=body)
        assert response.status_code == 422, response.text
        assert message in response.text, response.text
        assert "oversample" in json.dumps(response.json()["detail"][0]["loc"])


def test_compare_takes_oversample_for_every_pipeline_or_names_the_one_that_cannot(rabitq_client):
    body = {"query": "heart artery", "k": 5, "pipelines": ["rabitq"], "oversample": 12}
    answered = rabitq_client.post("/compare", json=body)
    assert answered.status_code == 200, answered.text
    assert answered.json()["pipelines"]["rabitq"]["timings"]["rescore_ms"] > 0
    refused = rabitq_client.post("/compare", json={**body, "pipelines": ["sq8"]})
    assert refused.status_code == 422
    assert "pipeline 'sq8'" in refused.text and "which this index does not keep" in refused.text
