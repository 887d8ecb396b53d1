"""The multi-pipeline server: /search, /search/batch, /compare, /pipelines, /metrics, /metrics/prometheus, the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.evaluation.evaluate import evaluate
from search.pipeline import Pipeline, build_index_dir
from search.serve.app import MAX_BATCH, ServerConfig, create_app
from search.serve.pipelines import PipelineSource, choose_reference, encoder_precision, parse_pipeline_specs

TIMING_KEYS = {"tokenize_ms", "encode_ms", "search_ms", "rescore_ms", "total_ms"}


@pytest.fixture(autouse=True)
def single_thread_faiss():
    """Tiny indexes build in milliseconds on one thread but can take seconds when OpenMP threads contend for
    a busy 2-core machine; restore the setting afterwards."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def index_dirs(tmp_path, beir_dir):
    """A teacher (Flat, 128 d) and a compressed pipeline (PQ with exact re-ranking, 32 d) on the tiny dataset."""
    dataset = load_beir(beir_dir)
    teacher, small = tmp_path / "teacher", tmp_path / "small"
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), teacher, show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), small, show_progress=False)
    return {"teacher": teacher, "compressed": small}


def make_config(index_dirs, beir_dir, **options) -> ServerConfig:
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    return ServerConfig(pipelines=sources, metrics_dataset=str(beir_dir), **options)


@pytest.fixture
def client(index_dirs, beir_dir):
    with TestClient(create_app(make_config(index_dirs, beir_dir))) as test_client:
        yield test_client


def ids(hits) -> list[str]:
    return [hit["id"] for hit in hits]


def test_search_defaults_to_the_first_pipeline_and_splits_timings(client, index_dirs):
    default = client.post("/search", json={"query": "vitaminkey", "k": 5}).json()
    assert default["pipeline"] == "teacher" and set(default["timings"]) == TIMING_KEYS
    assert default["timings"]["rescore_ms"] == 0.0  # Flat: no re-ranking stage
    compressed = client.post("/search", json={"query": "vitaminkey", "k": 5, "pipeline": "compressed"}).json()
    assert compressed["pipeline"] == "compressed" and compressed["timings"]["rescore_ms"] > 0.0
    t = compressed["timings"]
    assert t["total_ms"] >= t["tokenize_ms"] + t["encode_ms"] + t["search_ms"] + t["rescore_ms"] - 1e-6
    # the served hits are FAISS's own refine search of the stored index
    pipeline = Pipeline.load(index_dirs["compressed"])
    _, positions = pipeline.stored.index.search(pipeline.encode_queries(["vitaminkey"]), 5)
    assert ids(compressed["hits"]) == pipeline.ids_of(positions)[0]


def test_tokenize_time_is_not_counted_as_encode_time(tmp_path, beir_dir):
    class SlowTokenizer(FakeEncoder):
        def encode_timed(self, texts, kind="query", batch_size=32):
            time.sleep(0.05)
            return self.encode(texts, kind, batch_size), 0.05

    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    stored = Pipeline.load(tmp_path / "ix").stored
    timings = Pipeline(SlowTokenizer(dim=16), stored).search("heart", 3).timings
    assert timings.tokenize_ms == pytest.approx(50.0)
    assert timings.encode_ms < 40.0 and timings.total_ms >= 50.0


@pytest.mark.parametrize("route", ["/search", "/search/batch"])
def test_unknown_pipeline_is_422_listing_the_loaded_ones(client, route):
    payload = {"query": "x", "queries": ["x"], "pipeline": "nope"}
    response = client.post(
        route, json={k: v for k, v in payload.items() if k != ("query" if "batch" in route else "queries")}
    )
    assert response.status_code == 422
    assert "unknown pipeline 'nope'; loaded: teacher, compressed" in str(response.json()["detail"])


def test_batch_encodes_once_and_matches_single_searches(client, index_dirs):
    queries = ["vitaminkey", "heart artery", "brain memory synapse"]
    body = client.post("/search/batch", json={"queries": queries, "k": 4, "pipeline": "compressed"}).json()
    assert body["pipeline"] == "compressed" and set(body["timings"]) == TIMING_KEYS
    assert [item["query"] for item in body["results"]] == queries
    for item in body["results"]:
        single = client.post("/search", json={"query": item["query"], "k": 4, "pipeline": "compressed"}).json()
        assert ids(item["hits"]) == ids(single["hits"])
    encoder = FakeEncoder(dim=32)
    pipeline = Pipeline(encoder, Pipeline.load(index_dirs["compressed"]).stored)
    pipeline.search_batch(queries, 4)
    assert encoder.calls == [3]  # one batch of three, not three calls


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
    assert response.status_code == 200 and len(response.json()["results"]) == MAX_BATCH


@pytest.mark.parametrize("route", ["/search", "/search/batch", "/compare"])
def test_bad_json_blank_query_and_k_are_422(client, route):
    bad_json = client.post(route, content=b'{"query": ', headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "json" in str(bad_json.json()["detail"]).lower()
    body = {"queries": [" "]} if route.endswith("batch") else {"query": " "}
    assert "empty or whitespace-only" in str(client.post(route, json=body).json()["detail"])
    body = {"queries": ["x"], "k": 0} if route.endswith("batch") else {"query": "x", "k": 0}
    assert client.post(route, json=body).status_code == 422


def test_compare_overlap_equals_a_hand_computation(client):
    k = 10
    reference = ids(
        client.post("/search", json={"query": "heart artery", "k": k, "pipeline": "teacher"}).json()["hits"]
    )
    other = ids(client.post("/search", json={"query": "heart artery", "k": k, "pipeline": "compressed"}).json()["hits"])
    body = client.post("/compare", json={"query": "heart artery", "k": k}).json()
    assert body["reference"] == "teacher" and body["k"] == k
    teacher, compressed = body["pipelines"]["teacher"], body["pipelines"]["compressed"]
    assert ids(teacher["hits"]) == reference and ids(compressed["hits"]) == other
    assert teacher["recall@k_vs_teacher"] == 1.0 and teacher["missing"] == teacher["extra"] == []
    assert compressed["recall@k_vs_teacher"] == pytest.approx(len(set(reference) & set(other)) / k)
    assert compressed["missing"] == [d for d in reference if d not in other]
    assert compressed["extra"] == [d for d in other if d not in reference]
    assert set(compressed["timings"]) == TIMING_KEYS


def test_reference_option_changes_what_compare_measures_against(index_dirs, beir_dir):
    with TestClient(create_app(make_config(index_dirs, beir_dir, reference="compressed"))) as client:
        body = client.post("/compare", json={"query": "viral vaccine", "k": 5}).json()
        assert body["reference"] == "compressed" and body["pipelines"]["compressed"]["recall@k_vs_teacher"] == 1.0
        assert client.get("/pipelines").json()["reference"] == "compressed"


def test_pipelines_describes_each(client):
    body = client.get("/pipelines").json()
    assert body["default"] == "teacher" and body["reference"] == "teacher"
    assert list(body["pipelines"]) == ["teacher", "compressed"]
    small = body["pipelines"]["compressed"]
    assert small["factory"] == "PQ4x4,RFlat" and small["search_params"] == {"k_factor": 4}
    assert small["precision"] == "fp32" and small["mode"] == "symmetric" and small["encoder"] == "fake"
    assert small["ntotal"] == 60 and small["dim"] == 32 and small["bytes_per_vector"] == pytest.approx(2 + 32 * 4)
    assert small["is_reference"] is False and body["pipelines"]["teacher"]["is_reference"] is True
    for key in ("doc_encoder", "model_bytes", "build", "index_dir"):
        assert key in small


def test_precision_comes_from_the_onnx_identity_or_config(tmp_path):
    assert encoder_precision({"type": "sentence-transformers"})["precision"] == "fp32"
    (tmp_path / "onnx_config.json").write_text(json.dumps({"precision": "int8", "quantization": "dynamic"}))
    assert encoder_precision({"type": "onnx", "path": str(tmp_path)}) == {
        "precision": "int8",
        "quantization": "dynamic",
    }
    assert (
        encoder_precision({"type": "onnx", "path": str(tmp_path / "gone"), "precision": "int8"})["precision"] == "int8"
    )


def test_metrics_match_evaluate_and_are_cached(client, index_dirs, beir_dir):
    first = client.get("/metrics")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["cached"] is False and body["reference"] == "teacher" and body["split"] == "test"
    assert set(body["pipelines"]) == {"teacher", "compressed"}
    dataset = load_beir(beir_dir)
    teacher = Pipeline.load(index_dirs["teacher"])
    for name, path in index_dirs.items():
        expected = evaluate(Pipeline.load(path), dataset, reference=teacher, show_progress=False)
        got = body["pipelines"][name]
        for key in ("ndcg@10", "recall@100", "mrr@10", "recall@10_vs_exact", "recall@10_vs_teacher"):
            assert got[key] == pytest.approx(expected[key]), (name, key)
        for stage in ("encode", "search", "total"):
            assert got[f"{stage}_ms_p50"] <= got[f"{stage}_ms_p95"] <= got[f"{stage}_ms_p99"]
    assert body["pipelines"]["teacher"]["recall@10_vs_teacher"] == 1.0  # Flat = its own exact search
    second = client.get("/metrics").json()
    assert second["cached"] is True and second["computed_at"] == body["computed_at"]
    assert second["pipelines"] == body["pipelines"]


def test_metrics_on_startup_are_cached_at_the_first_call(index_dirs, beir_dir):
    with TestClient(create_app(make_config(index_dirs, beir_dir, metrics_on_startup=True))) as client:
        assert client.get("/metrics").json()["cached"] is True


def test_metrics_unavailable_says_why(write_beir, index_dirs, beir_dir, tmp_path):

    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    with TestClient(create_app(ServerConfig(pipelines=sources))) as client:  # the path recorded at build time
        assert client.get("/metrics").status_code == 200
    beir_dir.rename(beir_dir.with_name("moved"))  # now neither the recorded path nor the name "tiny" resolves
    cases = [
        (ServerConfig(pipelines=sources), 404, "cannot load dataset"),
        (
            ServerConfig(pipelines=sources, metrics_dataset=str(beir_dir.with_name("moved")), metrics_split="dev"),
            404,
            "no qrels",
        ),  # fmt: skip
        (ServerConfig(pipelines=sources, metrics_dataset=str(write_beir(tmp_path / "other", seed=9))), 409, "corpus"),
    ]
    for config, status, message in cases:
        with TestClient(create_app(config)) as client:
            response = client.get("/metrics")
            assert response.status_code == status and message in response.json()["detail"], response.text
            assert client.post("/search", json={"query": "x"}).status_code == 200  # the server still serves


def test_prometheus_histograms_and_counters(index_dirs, beir_dir):
    with TestClient(create_app(make_config(index_dirs, beir_dir))) as client:
        client.post("/search", json={"query": "cancer", "pipeline": "compressed"})
        client.post("/search", json={"query": "", "pipeline": "compressed"})
        client.post("/search/batch", json={"queries": ["a", "b"]})
        text = client.get("/metrics/prometheus").text
        for stage in ("tokenize", "encode", "search", "rescore", "total"):
            assert f'semsearch_stage_seconds_count{{pipeline="compressed",stage="{stage}"}} 1.0' in text
        assert 'semsearch_stage_seconds_bucket{le="0.001",pipeline="compressed",stage="total"}' in text
        assert 'semsearch_batch_queries_sum{pipeline="teacher"} 2.0' in text
        assert 'semsearch_requests_total{route="/search"} 2.0' in text
        assert 'semsearch_errors_total{route="/search",status="422"} 1.0' in text
        assert 'pipeline="teacher",stage="total"' not in text.split("semsearch_batch")[0]
    with TestClient(create_app(make_config(index_dirs, beir_dir))) as fresh:  # a new app has its own registry
        text = fresh.get("/metrics/prometheus").text
        assert "semsearch_stage_seconds_count" not in text and 'semsearch_requests_total{route="/search"}' not in text


def test_workers_threads_sets_the_thread_pool(index_dirs, beir_dir):
    import anyio.to_thread

    async def pool_size() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    with TestClient(create_app(make_config(index_dirs, beir_dir, workers_threads=3))) as client:
        assert client.portal.call(pool_size) == 3
        assert client.post("/search", json={"query": "x"}).status_code == 200


def test_config_and_name_validation(tmp_path, index_dirs, beir_dir):
    with pytest.raises(ValueError, match="no pipelines to serve"):
        ServerConfig()
    with pytest.raises(ValueError, match="'a' is used 2 times"):
        ServerConfig(pipelines=(PipelineSource("a", tmp_path), PipelineSource("a", tmp_path)))
    with pytest.raises(ValueError, match="workers_threads must be >= 1"):
        ServerConfig(index_dir=tmp_path, workers_threads=0)
    with pytest.raises(ValueError) as err:
        parse_pipeline_specs(["good=dir", "bad name=dir", "nodir", "good=other"])
    assert all(
        part in str(err.value) for part in ("'bad name' must match", "'nodir' is not NAME=DIR", "'good' is used")
    )
    assert parse_pipeline_specs(["t-1_x=some/dir"]) == [PipelineSource("t-1_x", Path("some/dir"))]
    assert choose_reference(["a", "teacher"], None) == "teacher" and choose_reference(["a", "b"], None) == "a"
    with pytest.raises(ValueError, match="reference pipeline 'x' is not loaded; loaded: teacher, compressed"):
        with TestClient(create_app(make_config(index_dirs, beir_dir, reference="x"))):
            pass


def test_index_dir_and_named_pipelines_together(index_dirs):
    config = ServerConfig(
        index_dir=index_dirs["teacher"], pipelines=(PipelineSource("compressed", index_dirs["compressed"]),)
    )
    with TestClient(create_app(config)) as client:
        assert client.get("/health").json()["pipelines"] == ["default", "compressed"]
        assert client.post("/compare", json={"query": "x", "k": 3}).json()["reference"] == "default"


runner = CliRunner()


def test_serve_cli_validates_before_starting(tmp_path, index_dirs, monkeypatch):
    import uvicorn

    from search.cli import app

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda fastapi_app, **kwargs: started.append(fastapi_app))
    cases = [
        (("--pipeline", "oops"), "'oops' is not NAME=DIR"),
        (("--pipeline", f"a b={tmp_path}"), "must match [A-Za-z0-9_-]+"),
        (("--pipeline", f"a={index_dirs['teacher']}", "--pipeline", f"a={index_dirs['compressed']}"), "used 2 times"),
        (("--pipeline", f"t={tmp_path / 'none'}"), "does not exist"),
        (("--pipeline", f"t={index_dirs['teacher']}", "--reference", "x"), "not loaded; loaded: t"),
        ((), "no pipelines to serve"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert not started
    args = [f"--pipeline=teacher={index_dirs['teacher']}", f"--pipeline=compressed={index_dirs['compressed']}"]
    result = runner.invoke(app, ["serve", *args, "--workers-threads", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    with TestClient(started[0]) as client:
        assert list(client.get("/pipelines").json()["pipelines"]) == ["teacher", "compressed"]


def test_rflat_split_equals_faiss_refine_on_random_unit_vectors(unit_vectors):
    from indexes.faiss_index import apply_search_params, build_index
    from indexes.rescore import RefineSplit

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = unit_vectors(40, 32, seed=4)
    for factory in ("HNSW16,RFlat", "IVF16,PQ8x4,RFlat", "PQ8x4,RFlat", "SQ8,RFlat"):
        index = build_index(vectors, IndexSpec(factory)).index
        split = RefineSplit.of(index)
        assert split is not None, factory
        for k_factor in (1, 4):
            apply_search_params(index, {"k_factor": k_factor})
            want_scores, want = index.search(queries, 10)
            got = split.search(queries, 10)
            np.testing.assert_array_equal(got.positions, want, err_msg=f"{factory} k_factor={k_factor}")
            np.testing.assert_allclose(got.scores, want_scores, atol=1e-5)
            assert got.rescore_seconds > 0 and got.search_seconds > 0
    assert RefineSplit.of(build_index(vectors, IndexSpec("HNSW16")).index) is None


def test_pipeline_rflat_search_equals_faiss_with_a_k_factor_override(index_dirs):
    pipeline = Pipeline.load(index_dirs["compressed"], search_params={"k_factor": 2})
    assert pipeline.stored.index.k_factor == 2
    vectors = pipeline.encode_queries(["vitamin bone", "tumor cells", "neurons"])
    want_scores, want = pipeline.stored.index.search(vectors, 7)
    scores, positions = pipeline.search_vectors(vectors, 7)
    np.testing.assert_array_equal(positions, want)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
