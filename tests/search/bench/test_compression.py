import json

import pytest

from compression.models import model_bytes
from compression.onnx_export import export_onnx
from compression.quantize import quantize_onnx
from search.bench.compression import CompressionBenchSpec, run_compression_bench

REQUIRED_KEYS = (
    "teacher_ndcg@10", "minilm_ndcg@10", "student_fp32_ndcg@10", "student_int8_ndcg@10", "asymmetric_int8_ndcg@10",
    "student_int8_recall@10_vs_teacher", "asymmetric_int8_recall@10_vs_teacher", "teacher_encode_ms_p50",
    "student_int8_encode_ms_p50", "teacher_model_bytes", "student_int8_model_bytes", "teacher_docs_per_s",
    "student_int8_docs_per_s", "student", "machine",
)  # fmt: skip


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
    for key in REQUIRED_KEYS:
        assert summary[key] is not None, key
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["teacher_ndcg@10"] == pytest.approx(summary["teacher_ndcg@10"])
    pipelines = json.loads((tmp_path / "out" / "pipelines.json").read_text())
    assert pipelines["teacher"]["recall@10_vs_teacher"] == 1.0  # the teacher agrees with its own exact search
    assert pipelines["asymmetric_int8"]["doc_encoder"] == "teacher"
    # the document-tower layout: student queries over the tower's documents (here the tiny teacher, 48-d)
    assert pipelines["tower_int8"]["doc_encoder"] == "teacher" and pipelines["tower_int8"]["encoder"] == "int8"
    assert summary["tower_int8_ndcg@10"] == pytest.approx(pipelines["tower_int8"]["ndcg@10"])
    assert summary["student_int8_model_bytes"] < model_bytes(student)  # int8 weights are smaller than fp32 ones
    assert "| student_int8 |" in (tmp_path / "out" / "summary.md").read_text()
