"""`semsearch serve`: the config is validated (exit 2, one line) before the server starts; then it serves."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import build_index_dir


@pytest.fixture
def index_dirs(tmp_path, beir_dir):
    """A teacher (Flat, 128 d) and a compressed pipeline (PQ with exact re-ranking, 32 d) on the tiny dataset."""
    dataset = load_beir(beir_dir)
    dirs = {"teacher": tmp_path / "teacher", "compressed": tmp_path / "small"}
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), dirs["teacher"], show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), dirs["compressed"], show_progress=False)
    return dirs


def test_serve_cli_validates_before_starting(tmp_path, index_dirs, monkeypatch):
    import uvicorn

    from search.cli import app

    started, options = [], []

    def run(fastapi_app, **kwargs):
        started.append(fastapi_app)
        options.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", run)
    cases = [
        (("--pipeline", "oops"), "'oops' is not NAME=DIR"),
        (("--pipeline", f"a b={tmp_path}"), "must match [A-Za-z0-9_-]+"),
        (("--pipeline", f"a={index_dirs['teacher']}", "--pipeline", f"a={index_dirs['compressed']}"), "used 2 times"),
        (("--pipeline", f"t={tmp_path / 'none'}"), "does not exist"),
        (("--pipeline", f"t={index_dirs['teacher']}", "--reference", "x"), "not loaded; loaded: t"),
        ((), "no pipelines to serve"),
    ]
    runner = CliRunner()
    for args, message in cases:
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not started
    args = [f"--pipeline=teacher={index_dirs['teacher']}", f"--pipeline=compressed={index_dirs['compressed']}"]
    result = runner.invoke(app, ["serve", *args, "--workers-threads", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert options[0]["access_log"] is False  # off unless asked for
    with TestClient(started[0], base_url="http://127.0.0.1") as client:
        assert list(client.get("/pipelines").json()["pipelines"]) == ["teacher", "compressed"]
    assert runner.invoke(app, ["serve", *args, "--access-log"]).exit_code == 0
    assert options[1]["access_log"] is True
