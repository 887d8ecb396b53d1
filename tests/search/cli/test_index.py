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


def test_vectors_option_and_migrate_index_of_a_format_1_directory(tmp_path, beir_dir, assert_same_ranking):
    """`--vectors fp32` keeps the vector file; a directory turned back into format 1 is refused with the command
    that converts it, which restores it (the vector file from the embedding cache) to the same search results."""
    import sqlite3

    out = tmp_path / "ix"
    built = invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:32", "--index", "SQ4", "--vectors",
                   "fp32", "--out", str(out), "--json")  # fmt: skip
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["vector_file"] == "fp32"
    assert json.loads(built.stdout)["search_params"] == {"oversample": 4}
    before = invoke("search", "--index-dir", str(out), "vitamin bone", "--json")
    # back to the previous format: ids.json and docs.jsonl, no store, no vector file
    with sqlite3.connect(out / "docs.sqlite") as connection:
        rows = connection.execute("SELECT id, title, snippet FROM docs ORDER BY pos").fetchall()
    connection.close()
    (out / "ids.json").write_text(json.dumps([r[0] for r in rows]))
    (out / "docs.jsonl").write_text("".join(json.dumps({"id": r[0], "title": r[1], "snippet": r[2]}) + "\n"
                                            for r in rows))  # fmt: skip
    for name in ("docs.sqlite", "docs.sqlite-wal", "docs.sqlite-shm", "vectors.npy"):
        (out / name).unlink(missing_ok=True)
    meta = json.loads((out / "meta.json").read_text())
    meta = {**{k: v for k, v in meta.items() if k not in ("vector_file", "doc_store")}, "format_version": 1}
    (out / "meta.json").write_text(json.dumps(meta))
    refused = invoke("search", "--index-dir", str(out), "vitamin bone")
    assert refused.exit_code == 2
    assert f"semsearch migrate-index {out}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    migrated = invoke("migrate-index", str(out), "--json")
    assert migrated.exit_code == 0, migrated.output
    assert json.loads(migrated.stdout)["vector_file"] == "fp16"  # from the embedding cache
    after = invoke("search", "--index-dir", str(out), "vitamin bone", "--json")
    got, want = json.loads(after.stdout)["hits"], json.loads(before.stdout)["hits"]  # rescored from fp16, then fp32
    assert_same_ranking([h["id"] for h in got], [h["score"] for h in got], [h["id"] for h in want],
                        [h["score"] for h in want], eps=2e-3)  # fmt: skip
    again = invoke("migrate-index", str(out))
    assert again.exit_code == 2 and "only format 1 directories" in again.stderr
