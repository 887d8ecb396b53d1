import json

from typer.testing import CliRunner

from search.cli import app

runner = CliRunner()


def invoke(*args: str):
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
    assert summary["documents"] == 60 and summary["search_params"] == {"nprobe": 2}
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

    table = invoke("search", "--index-dir", str(out), "cancerkey", "-k", "2")
    assert table.exit_code == 0 and "top 2" in table.stdout and "encode" in table.stdout

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


def test_errors_exit_2_with_a_message(tmp_path, beir_dir):
    cases = [
        (
            (
                "index",
                "--dataset",
                str(beir_dir),
                "--encoder",
                "fake:8",
                "--index",
                "LSH",
                "--out",
                str(tmp_path / "a"),
            ),
            "unsupported index factory 'LSH'",
        ),
        (
            ("index", "--dataset", str(beir_dir), "--encoder", "nope", "--out", str(tmp_path / "b")),
            "unknown model 'nope': use one of teacher, minilm",
        ),
        (
            ("index", "--dataset", str(tmp_path / "missing.jsonl"), "--encoder", "fake", "--out", str(tmp_path / "c")),
            "unknown dataset",
        ),
        (("search", "--index-dir", str(tmp_path / "none"), "query"), "does not exist"),
        (("eval", "--index-dir", str(tmp_path / "none")), "does not exist"),
        (("serve", "--index-dir", str(tmp_path / "none")), "does not exist"),
        (
            (
                "index",
                "--dataset",
                str(beir_dir),
                "--encoder",
                "fake",
                "--params",
                "nprobe",
                "--out",
                str(tmp_path / "d"),
            ),
            "bad search parameter 'nprobe'",
        ),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_eval_without_qrels_split(tmp_path, beir_dir):
    invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:16", "--out", str(tmp_path / "ix"))
    result = invoke("eval", "--dataset", str(beir_dir), "--index-dir", str(tmp_path / "ix"), "--split", "dev")
    assert result.exit_code == 2 and "no qrels for split 'dev'" in result.output


def test_search_with_params_that_do_not_apply(tmp_path, beir_dir):
    invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:16", "--out", str(tmp_path / "ix"))
    result = invoke("search", "--index-dir", str(tmp_path / "ix"), "x", "--params", "nprobe=3")
    assert result.exit_code == 2 and "does not apply to this index" in result.output


def test_distill_command_on_tiny_models(build_tiny_sentence_model, tmp_path, beir_dir):
    from sentence_transformers import SentenceTransformer

    teacher = build_tiny_sentence_model(tmp_path / "teacher", seed=1, dense_dim=48)
    student = build_tiny_sentence_model(tmp_path / "student", seed=2, dense_dim=48)
    result = invoke(
        "distill", "--dataset", str(beir_dir), "--teacher", str(teacher), "--student", str(student),
        "--out", str(tmp_path / "out"), "--epochs", "2", "--max-texts", "40", "--eval-texts", "8",
        "--batch-size", "8", "--threads", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # the default recipe (rank loss, train-query labels) adds the train queries the 40-text sample missed
    assert 40 <= report["texts"] <= 45 and len(report["epoch_losses"]) == 2
    assert report["config"]["loss"] == "rank" and report["eval_top10_overlap_after"] is not None
    assert report["epoch_losses"][-1] < report["epoch_losses"][0]
    vectors = SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(["a claim"], normalize_embeddings=True)
    assert vectors.shape == (1, 48)
    bad = invoke("distill", "--dataset", str(beir_dir), "--loss", "l1", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "l1" in bad.output


def test_quantize_command_reports_sizes_latency_and_gate(build_tiny_sentence_model, tmp_path, beir_dir):

    model = build_tiny_sentence_model(tmp_path / "model", seed=3)
    result = invoke(
        "quantize", "--model", str(model), "--out", str(tmp_path / "q"), "--dataset", str(beir_dir),
        "--gate-docs", "20", "--threads", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["int8_model_bytes"] < report["fp32_model_bytes"]
    assert report["gate_split"] == "train" and report["gate_queries"] == 5
    assert (tmp_path / "q" / "int8" / "model.onnx").exists()


def test_quantize_gate_failure_warns_and_strict_exits_1(build_tiny_sentence_model, tmp_path, beir_dir, monkeypatch):
    import search.evaluation.quantize_gate as gate_module

    def failing_gate(*args, **kwargs):
        return gate_module.GateResult("train", 5, 30, ndcg_reference=0.8, ndcg_candidate=0.5, tolerance=0.005)

    monkeypatch.setattr(gate_module, "quality_gate", failing_gate)
    model = build_tiny_sentence_model(tmp_path / "model", seed=3)
    args = ["quantize", "--model", str(model), "--out", str(tmp_path / "q"), "--dataset", str(beir_dir), "--json"]
    warned = invoke(*args)
    assert warned.exit_code == 0 and "warning: int8 loses 0.3000 nDCG@10 on train queries" in warned.output
    strict = invoke(*args, "--strict")
    assert strict.exit_code == 1 and "warning: int8 loses" in strict.output
    bad = invoke("quantize", "--model", str(model), "--out", str(tmp_path / "q3"), "--mode", "int4")
    assert bad.exit_code == 2 and "unknown mode 'int4': use one of dynamic, static" in bad.output


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
    assert summary["mode"] == "asymmetric" and summary["doc_encoder"] == "model"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"]["type"] == "onnx" and meta["doc_encoder"]["type"] == "sentence-transformers"
    report = json.loads(invoke("eval", "--dataset", str(beir_dir), "--index-dir", str(out), "--json").stdout)
    assert report["recall@10_vs_exact"] == 1.0 and report["doc_encoder"] == "model"
    # documents and queries from models of different widths cannot share an index
    other = build_tiny_sentence_model(tmp_path / "wide", seed=6, dense_dim=48)
    bad = invoke("index", "--dataset", str(beir_dir), "--encoder", str(model), "--doc-encoder", str(other),
                 "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.exit_code == 2 and "must share one embedding space" in bad.output
