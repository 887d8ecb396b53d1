"""`semsearch distill` and `quantize` on tiny models: defaults, reports, the gate's warning and exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner, Result

from search.cli import app
from search.jobs.main_job import MainJobSpec

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def test_distill_command_on_tiny_models(build_tiny_sentence_model, tmp_path, beir_dir):
    from sentence_transformers import SentenceTransformer

    teacher = build_tiny_sentence_model(tmp_path / "teacher", seed=1, dense_dim=48)
    student = build_tiny_sentence_model(tmp_path / "student", seed=2, dense_dim=48)
    result = invoke(
        "distill", "--dataset", str(beir_dir), "--teacher", str(teacher), "--student", str(student),
        "--out", str(tmp_path / "out"), "--epochs", "2", "--max-texts", "40", "--eval-texts", "8",
        "--batch-size", "8", "--threads", "1", "--loss", "rank", "--pseudo-queries", "12",
        "--curriculum", "corpus-first", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # 40 corpus texts + 12 pseudo-queries; the rank loss with train-query labels adds the train queries the sample
    # missed; corpus text first, then the query-like texts: 2 stages x 2 epochs
    assert 52 <= report["texts"] <= 57
    assert len(report["epoch_losses"]) == 4
    assert report["config"]["curriculum"] == "corpus-first"
    assert report["config"]["loss"] == "rank"
    assert report["eval_top10_overlap_after"] is not None
    assert report["epoch_losses"][1] < report["epoch_losses"][0]  # the corpus stage learns
    vectors = SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(["a claim"], normalize_embeddings=True)
    assert vectors.shape == (1, 48)


def test_distill_choices_are_usage_errors_naming_the_values(tmp_path, beir_dir, usage_error):
    args = ("distill", "--dataset", str(beir_dir), "--out", str(tmp_path / "x"))
    usage_error(invoke(*args, "--loss", "l1"), "'l1' is not one of 'mse', 'kl', 'mse+kl', 'rank', 'mse+rank'")
    usage_error(invoke(*args, "--curriculum", "random"), "'mixed', 'corpus-first', 'queries-first'")
    usage_error(invoke(*args, "--projection", "always"), "'auto', 'never'")
    usage_error(invoke(*args, "--batching", "sorted"), "'random', 'neighbours'")
    assert not (tmp_path / "x").exists()


def test_quantize_command_reports_sizes_latency_and_gate(build_tiny_sentence_model, tmp_path, beir_dir):

    model = build_tiny_sentence_model(tmp_path / "model", seed=3)
    result = invoke(
        "quantize", "--model", str(model), "--out", str(tmp_path / "q"), "--dataset", str(beir_dir),
        "--gate-docs", "20", "--threads", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["int8_model_bytes"] < report["fp32_model_bytes"]
    assert report["gate_split"] == "train"
    assert report["gate_queries"] == 5
    assert report["int8_model_bytes"] == (tmp_path / "q" / "int8" / "model.onnx").stat().st_size
    assert report["fp32_model_bytes"] == (tmp_path / "q" / "fp32" / "model.onnx").stat().st_size
    assert report["mode"] == "dynamic"
    assert report["latency_queries"] == "first 100 train queries, batch 1"


def test_quantize_gate_failure_warns_and_strict_exits_1(
    build_tiny_sentence_model, tmp_path, beir_dir, monkeypatch, usage_error
):
    import search.evaluation.quantize_gate as gate_module
    import search.jobs.quantize as quantize_job

    def failing_gate(*args, **kwargs):
        return gate_module.GateResult("train", 5, 30, ndcg_reference=0.8, ndcg_candidate=0.5, tolerance=0.005)

    monkeypatch.setattr(quantize_job, "quality_gate", failing_gate)
    model = build_tiny_sentence_model(tmp_path / "model", seed=3)
    args = ["quantize", "--model", str(model), "--out", str(tmp_path / "q"), "--dataset", str(beir_dir), "--json"]
    warned = invoke(*args)
    assert warned.exit_code == 0
    assert "warning: int8 loses 0.3000 nDCG@10 on train queries" in warned.output
    strict = invoke(*args, "--strict")
    assert strict.exit_code == 1
    assert "warning: int8 loses" in strict.output
    bad = invoke("quantize", "--model", str(model), "--out", str(tmp_path / "q3"), "--mode", "int4")
    usage_error(bad, "'int4' is not one of 'dynamic', 'static'")


def test_distill_options_default_to_the_shipped_recipe(tmp_path, beir_dir, monkeypatch):
    """With no options, the command hands `distill_on_dataset` exactly `DistillConfig()` (the shipped recipe)."""
    import search.jobs.distill as distill_job
    from compression.distill import DistillConfig

    calls = []

    def fake_distill(dataset, config, out, max_texts, eval_texts, seed, **options):
        calls.append((config, max_texts, eval_texts, seed))
        raise ValueError("stop here")

    monkeypatch.setattr(distill_job, "distill_on_dataset", fake_distill)
    result = invoke("distill", "--dataset", str(beir_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "stop here" in result.output
    config, max_texts, eval_texts, seed = calls[0]
    assert config == DistillConfig()
    assert (max_texts, eval_texts, seed) == (MainJobSpec().distill_texts, 256, 0)
    shipped = {"student": "teacher-layers:0,11", "loss": "mse+rank", "projection": "auto", "learning_rate": 1e-4,
               "epochs": 2, "batch_size": 32, "max_seq_length": 32, "precision": "auto"}  # fmt: skip
    assert {name: getattr(config, name) for name in shipped} == shipped
    invoke("distill", "--dataset", str(beir_dir), "--out", str(tmp_path / "o2"), "--lr", "0.001", "--loss", "kl",
           "--projection", "auto", "--label-boost", "0")  # fmt: skip
    changed = calls[1][0]
    assert (changed.learning_rate, changed.loss, changed.projection, changed.label_boost) == (1e-3, "kl", "auto", 0.0)


def test_prune_vocab_keeps_the_corpus_tokens_and_their_vectors(build_tiny_sentence_model, tmp_path, beir_dir):
    import numpy as np

    from compression.encoders.onnx import OnnxEncoder
    from compression.onnx_export import export_onnx
    from search.data.datasets import load_dataset

    model = build_tiny_sentence_model(tmp_path / "model", seed=4)
    fp32 = export_onnx(model, tmp_path / "fp32")
    result = invoke("prune-vocab", "--model", str(fp32), "--out", str(tmp_path / "pruned"), "--dataset",
                    str(beir_dir), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model_bytes_after"] < report["model_bytes_before"]
    assert report["token_occurrences_covered"] == 1.0
    corpus = [doc.full_text() for doc in load_dataset(str(beir_dir)).corpus[:5]]
    full, pruned = OnnxEncoder(fp32, threads=1), OnnxEncoder(tmp_path / "pruned", threads=1)
    np.testing.assert_allclose(pruned.encode(corpus), full.encode(corpus), atol=1e-5)
    capped = invoke("prune-vocab", "--model", str(fp32), "--out", str(tmp_path / "capped"), "--dataset",
                    str(beir_dir), "--max-tokens", "20", "--json")  # fmt: skip
    assert json.loads(capped.stdout)["kept_tokens"] == 20
    assert json.loads(capped.stdout)["model_bytes_after"] < report["model_bytes_after"]
    bad = invoke("prune-vocab", "--model", str(fp32), "--out", str(tmp_path / "x"), "--max-tokens", "0",
                 "--dataset", str(beir_dir))  # fmt: skip
    assert bad.exit_code == 2
    assert "max_tokens" in bad.output
