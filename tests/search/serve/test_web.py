"""The web page's server side: pages and static files, their headers, the API key, and GET /bench/results."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from search.cli import app as cli
from search.serve.app import create_app
from search.serve.bench_results import BenchResultsError, load_bench_results
from search.serve.config import Security, ServerConfig
from search.serve.web import CONTENT_SECURITY_POLICY, STATIC_DIR
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"
SERVER_PATH = "/root/.cache/semsearch/students/abc-onnx/int8-dynamic"


def row(encoder: str, index: str, recall: float, ms: float, pareto: bool, **params: int) -> dict:
    return {
        "encoder": encoder,
        "encoder_spec": SERVER_PATH,
        "doc_encoder": "teacher",
        "index": index,
        "params": params,
        "recall@10_vs_teacher": recall,
        "total_ms_p50": ms,
        "ndcg@10": 0.6,
        "bytes_per_vector": 96.0,
        "pareto": pareto,
    }


ROWS = [
    row("teacher", "Flat", 1.0, 70.0, True),
    row("student", "HNSW32", 0.6, 2.5, True, efSearch=16),
    row("student", "HNSW32", 0.65, 2.7, True, efSearch=32),
    row("minilm", "Flat", 0.5, 2.9, False),
]


def write_bench(folder: Path, rows: list | None = None, best: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(ROWS if rows is None else rows))
    summary = {"dataset": "tiny", "queries": 3, "machine": {"cores": 2, "python": SERVER_PATH}}
    if best is not None:
        summary["budget"] = {"best": best, "budget_ms": 5.0, "message": "best under 5 ms"}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def make_app(index_dirs: dict[str, Path], **options) -> TestClient:
    sources = tuple(PipelineSource(name, path) for name, path in index_dirs.items())
    return TestClient(create_app(ServerConfig(pipelines=sources, **options)), base_url=LOCAL)


def test_pages_and_files_are_served_with_a_strict_policy(index_dirs):
    with make_app(index_dirs) as client:
        for path, marker in (("/", 'id="search-form"'), ("/bench", 'id="frontier"')):
            page = client.get(path)
            assert page.status_code == 200
            assert marker in page.text
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "script-src 'self'" in CONTENT_SECURITY_POLICY
            assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
            assert page.headers["x-content-type-options"] == "nosniff"
        for name in ("common.js", "search.js", "bench.js", "app.css"):
            asset = client.get(f"/static/{name}")
            assert asset.status_code == 200
            assert asset.text == (STATIC_DIR / name).read_text(encoding="utf-8")
        assert "javascript" in client.get("/static/search.js").headers["content-type"]
        assert client.get("/static/../app.py").status_code == 404
        assert client.get("/static/%2e%2e/app.py").status_code == 404
        assert client.get("/static/nope.js").status_code == 404


def test_pages_never_parse_text_as_html():
    """The page builds every node from text: no innerHTML, insertAdjacentHTML, document.write or eval in its code."""
    for script in STATIC_DIR.glob("*.js"):
        code = script.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, f"{script.name} uses {sink}"
    for page in STATIC_DIR.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<script>" not in text
        assert "style=" not in text
        assert "http" not in text.replace("http-equiv", "")


def test_the_page_needs_no_key_but_the_api_does(index_dirs):
    with make_app(index_dirs, security=Security(api_key="k3y")) as client:
        assert client.get("/").status_code == 200
        assert client.get("/bench").status_code == 200
        assert client.get("/static/common.js").status_code == 200
        assert client.get("/pipelines").status_code == 401
        assert client.get("/bench/results").status_code == 401
        assert client.post("/", json={}).status_code == 405  # the page answers GET only
        assert client.get("/static/../pipelines").status_code in (401, 404)
        assert client.get("/pipelines", headers={"Authorization": "Bearer k3y"}).status_code == 200


def test_bench_results_are_served_public_with_the_budget_pick(index_dirs, tmp_path):
    bench = write_bench(tmp_path / "bench", best=ROWS[2])
    with make_app(index_dirs, bench_dir=bench) as client:
        body = client.get("/bench/results").json()
    assert body["x"] == "total_ms_p50"
    assert body["y"] == "recall@10_vs_teacher"
    assert [r["budget_pick"] for r in body["rows"]] == [False, False, True, False]
    assert [r["pareto"] for r in body["rows"]] == [r["pareto"] for r in ROWS]
    assert [r["recall@10_vs_teacher"] for r in body["rows"]] == [r["recall@10_vs_teacher"] for r in ROWS]
    assert body["budget"]["message"] == "best under 5 ms"
    assert body["dataset"] == "tiny"
    assert "/root" not in json.dumps(body)  # server paths dropped (base names only)
    assert body["rows"][0]["encoder_spec"] == "int8-dynamic"


def test_bench_results_without_a_folder_say_how_to_get_one(index_dirs):
    with make_app(index_dirs) as client:
        answer = client.get("/bench/results")
    assert answer.status_code == 404
    assert "--bench-dir" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: (d / "results.json").unlink(), "results.json does not exist"),
        (lambda d: (d / "results.json").write_text("[{"), "is not readable JSON"),
        (lambda d: (d / "results.json").write_text("{}"), "is not a non-empty list"),
        (lambda d: (d / "results.json").write_text("[]"), "is not a non-empty list"),
        (lambda d: (d / "results.json").write_text('[{"encoder": "x"}]'), "row 1 lacks index, total_ms_p50"),
        (lambda d: (d / "results.json").write_text(json.dumps([{**ROWS[0], "total_ms_p50": "fast"}])), "non-numeric"),
        (lambda d: (d / "results.json").write_text(json.dumps([ROWS[0], 7])), "row 2 is not an object"),
        (lambda d: (d / "summary.json").write_text("[1]"), "is not a JSON object"),
    ],
)
def test_a_broken_bench_folder_is_refused_naming_the_problem(tmp_path, damage, words):
    bench = write_bench(tmp_path / "bench")
    damage(bench)
    with pytest.raises(BenchResultsError) as caught:
        load_bench_results(bench)
    assert words in str(caught.value)


def test_serve_refuses_a_bad_bench_folder_in_one_line(index_dirs, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    args = ["serve", "--pipeline", f"teacher={index_dirs['teacher']}", "--port", port]
    missing = CliRunner().invoke(cli, [*args, "--bench-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    lines = missing.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error:")
    assert "is not a directory" in lines[0]
