import json
from dataclasses import asdict

import numpy as np
import psutil
import pytest

import semsearch_common.timing as timing
from compression.encoders import FakeEncoder
from compression.models import model_bytes
from compression.onnx_export import export_onnx
from compression.quantize import quantize_onnx
from search.bench.compression import (
    THROUGHPUT_WARMUP,
    CompressionBenchSpec,
    docs_per_second,
    run_compression_bench,
    summary_markdown,
)

PIPELINES = ("teacher", "minilm", "student_fp32", "student_int8", "asymmetric_int8", "tower_int8", "doc_tower_int8")


def test_docs_per_second_warms_up_then_times_one_pass(monkeypatch):
    clock = iter([0.0, 4.0])  # the warm-up is untimed; the pass takes 4 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    encoder = FakeEncoder(dim=8)
    texts = [f"document {i}" for i in range(20)]
    assert docs_per_second(encoder, texts) == pytest.approx(20 / 4.0)
    assert encoder.calls == [THROUGHPUT_WARMUP, 20]


def test_summary_markdown_table_and_ratios():
    summary = {"dataset": "d", "split": "test", "teacher_encode_ms_p50": 10.0, "throughput_docs": 16,
               "teacher_docs_per_s": 50.0, "student_int8_docs_per_s": 200.0,
               "machine": {"cpu": "CPU", "cores": 4, "threads": 2}}  # fmt: skip
    reports = {
        "teacher": {"ndcg@10": 0.6, "recall@10_vs_teacher": 1.0, "encode_ms_p50": 10.0, "model_bytes": 400e6},
        "student_int8": {"ndcg@10": 0.55556, "recall@10_vs_teacher": 0.8, "encode_ms_p50": 2.5, "model_bytes": 25e6},
    }
    text = summary_markdown(summary, reports)
    assert "Machine: CPU, 4 cores, 2 threads." in text
    lines = text.splitlines()
    header = lines.index("| pipeline | nDCG@10 | recall@10 vs teacher | encode ms p50 | vs teacher | model MB |")
    assert lines[header + 1] == "|---|---|---|---|---|---|"
    assert lines[header + 2] == "| teacher | 0.6000 | 1.000 | 10.00 | 1.0x faster | 400.0 |"
    assert lines[header + 3] == "| student_int8 | 0.5556 | 0.800 | 2.50 | 4.0x faster | 25.0 |"
    assert "teacher 50.0 docs/s, int8 student 200.0 docs/s (4.0x)." in text


def test_compression_bench_layouts_on_fake_encoders(tmp_path, beir_dir):
    # the student is the teacher's own encoder, so it must score exactly as the teacher; the 8-d document tower
    # cannot serve 16-d student queries, so that layout is skipped
    spec = CompressionBenchSpec(student="fake:16", student_int8="fake:16", dataset=str(beir_dir), teacher="fake:16",
                                minilm="fake:8", threads=1, throughput_docs=10, doc_tower="fake:8")  # fmt: skip
    summary = run_compression_bench(spec, tmp_path / "out", show_progress=False)
    pipelines = json.loads((tmp_path / "out" / "pipelines.json").read_text())
    assert set(pipelines) == set(PIPELINES) - {"tower_int8"}
    assert summary["tower_int8_ndcg@10"] is None
    assert summary["tower_int8_recall@10_vs_teacher"] is None
    for name in set(PIPELINES) - {"tower_int8"}:  # every headline figure comes from its own pipeline's report
        assert summary[f"{name}_ndcg@10"] == pipelines[name]["ndcg@10"], name
    for name in ("student_fp32", "student_int8", "asymmetric_int8"):
        assert pipelines[name]["ndcg@10"] == pytest.approx(pipelines["teacher"]["ndcg@10"])
        assert pipelines[name]["recall@10_vs_teacher"] == 1.0
    assert pipelines["minilm"]["recall@10_vs_teacher"] < 1.0  # another hash space
    assert pipelines["doc_tower_int8"]["ndcg@10"] == pytest.approx(pipelines["minilm"]["ndcg@10"])  # both fake:8
    assert summary["throughput_docs"] == 10
    assert summary["spec"] == asdict(spec)
    assert summary["machine"]["cores"] == psutil.cpu_count(logical=True)
    assert summary["machine"]["threads"] == 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")][1:] == [
        f"| {name}" for name in PIPELINES if name != "tower_int8"
    ]


def test_compression_bench_on_tiny_models(build_tiny_sentence_model, tmp_path, beir_dir):
    teacher = build_tiny_sentence_model(tmp_path / "teacher", seed=1, dense_dim=48)
    minilm = build_tiny_sentence_model(tmp_path / "minilm", seed=2)
    student = build_tiny_sentence_model(tmp_path / "student", seed=3, dense_dim=48)
    int8 = quantize_onnx(export_onnx(student, tmp_path / "fp32"), tmp_path / "int8")
    spec = CompressionBenchSpec(
        student=str(student), student_int8=str(int8), dataset=str(beir_dir), teacher=str(teacher),
        minilm=str(minilm), threads=1, throughput_docs=16, doc_tower=str(teacher),
    )  # fmt: skip
    summary = run_compression_bench(spec, tmp_path / "out", show_progress=False)
    pipelines = json.loads((tmp_path / "out" / "pipelines.json").read_text())
    assert set(pipelines) == set(PIPELINES)
    for name in PIPELINES:
        assert summary[f"{name}_ndcg@10"] == pytest.approx(pipelines[name]["ndcg@10"]), name
    for name in PIPELINES[1:]:
        assert summary[f"{name}_recall@10_vs_teacher"] == pytest.approx(pipelines[name]["recall@10_vs_teacher"])
    for name in ("teacher", "minilm", "student_int8"):
        assert summary[f"{name}_encode_ms_p50"] == pytest.approx(pipelines[name]["encode_ms_p50"])
    assert pipelines["teacher"]["recall@10_vs_teacher"] == 1.0  # the teacher agrees with its own exact search
    assert pipelines["asymmetric_int8"]["doc_encoder"] == "teacher"
    # the document-tower layout: student queries over the tower's documents (here the tiny teacher, 48-d)
    assert pipelines["tower_int8"]["doc_encoder"] == "teacher"
    assert pipelines["tower_int8"]["encoder"] == "int8"
    assert summary["teacher_model_bytes"] == model_bytes(teacher)
    assert summary["student_int8_model_bytes"] < model_bytes(student)  # int8 weights are smaller than fp32 ones
    assert np.isfinite(summary["teacher_docs_per_s"])
    assert summary["student_int8_docs_per_s"] > 0
    assert summary["student"]["fp32"]["path"] == str(student.resolve())
    assert summary["student"]["int8"]["precision"] == "int8"
    assert "| student_int8 |" in (tmp_path / "out" / "summary.md").read_text()


def test_cli_bench_compression_names_both_students_by_precision(tmp_path, beir_dir):
    from typer.testing import CliRunner

    from search.cli import app

    out = tmp_path / "out"
    args = ["bench-compression", "--student-fp32", "fake:16", "--student-int8", "fake:12", "--teacher", "fake:16",
            "--minilm", "fake:8", "--dataset", str(beir_dir), "--threads", "1", "--throughput-docs", "10",
            "--out", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "summary.json").read_text())["spec"]
    assert (spec["student"], spec["student_int8"], spec["threads"]) == ("fake:16", "fake:12", 1)
