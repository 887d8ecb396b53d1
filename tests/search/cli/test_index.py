"""`semsearch index`, `search` and `eval` end to end on the tiny dataset (fake and tiny real encoders)."""

from __future__ import annotations

import json

from typer.testing import CliRunner, Result

from search.cli import app

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def test_index_search_eval_round_trip(tmp_path, beir_dir):
    out = tmp_path / "ix"
    built = invoke(
        "index",
        "--dataset",
        str(beir_dir),
        "--encoder",
        "fake:256",
        "--index",
        "IVF4,Flat",
        "--params",
        "nprobe=2",
        "--out",
        str(out),
        "--json",
    )
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["documents"] == 60
    assert summary["search_params"] == {"nprobe": 2}
    assert summary["embeddings_from_cache"] is False

    again = invoke(
        "index",
        "--dataset",
        str(beir_dir),
        "--encoder",
        "fake:256",
        "--index",
        "Flat",
        "--out",
        str(tmp_path / "flat"),
        "--json",
    )
    assert json.loads(again.stdout)["embeddings_from_cache"] is True

    hits = invoke("search", "--index-dir", str(out), "cancerkey", "-k", "3", "--params", "nprobe=4", "--json")
    assert hits.exit_code == 0, hits.output
    assert [h["id"][:6] for h in json.loads(hits.stdout)["hits"]][0] == "cancer"

    table = invoke("search", "--index-dir", str(out), "cancerkey", "--k", "2")  # -k is its short form
    assert table.exit_code == 0
    assert "top 2" in table.stdout
    assert "encode" in table.stdout

    evaluated = invoke("eval", "--dataset", str(beir_dir), "--index-dir", str(out), "--params", "nprobe=4", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["recall@10_vs_exact"] == 1.0  # nprobe = nlist is exhaustive
    for key in (
        "ndcg@10",
        "recall@100",
        "mrr@10",
        "encode_ms_p50",
        "encode_ms_p95",
        "search_ms_p50",
        "search_ms_p95",
        "bytes_per_vector",
        "model_bytes",
    ):
        assert key in report


def test_eval_without_qrels_split(tmp_path, beir_dir):
    invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:16", "--out", str(tmp_path / "ix"))
    result = invoke("eval", "--dataset", str(beir_dir), "--index-dir", str(tmp_path / "ix"), "--split", "dev")
    assert result.exit_code == 2
    assert "no qrels for split 'dev'" in result.output


def test_search_with_params_that_do_not_apply(tmp_path, beir_dir):
    invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:16", "--out", str(tmp_path / "ix"))
    result = invoke("search", "--index-dir", str(tmp_path / "ix"), "x", "--params", "nprobe=3")
    assert result.exit_code == 2
    assert "does not apply to this index" in result.output


def test_asymmetric_index_onnx_queries_over_torch_documents(build_tiny_sentence_model, tmp_path, beir_dir):
    """The compressed query path: an ONNX (here fp32) student encodes queries, the torch model the documents."""
    from compression.onnx_export import export_onnx

    model = build_tiny_sentence_model(tmp_path / "model", seed=5)
    onnx_dir = export_onnx(model, tmp_path / "onnx")
    out = tmp_path / "ix"
    built = invoke("index", "--dataset", str(beir_dir), "--encoder", f"student:{onnx_dir}", "--doc-encoder",
                   str(model), "--out", str(out), "--threads", "1", "--json")  # fmt: skip
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["mode"] == "asymmetric"
    assert summary["doc_encoder"] == "model"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"]["type"] == "onnx"
    assert meta["doc_encoder"]["type"] == "sentence-transformers"
    report = json.loads(invoke("eval", "--dataset", str(beir_dir), "--index-dir", str(out), "--json").stdout)
    assert report["recall@10_vs_exact"] == 1.0
    assert report["doc_encoder"] == "model"
    # documents and queries from models of different widths cannot share an index
    other = build_tiny_sentence_model(tmp_path / "wide", seed=6, dense_dim=48)
    bad = invoke("index", "--dataset", str(beir_dir), "--encoder", str(model), "--doc-encoder", str(other),
                 "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.exit_code == 2
    assert "must share one embedding space" in bad.output
