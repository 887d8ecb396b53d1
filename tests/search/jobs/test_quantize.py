"""The quantize job on a tiny model: its report against the files on disk, the int8 model against fp32, the gate
against an independent exact ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.encoders.onnx import OnnxEncoder
from search.data.datasets import load_beir
from search.evaluation.metrics import ndcg_at_k
from search.evaluation.quantize_gate import gate_subset
from search.jobs.quantize import QuantizeSpec, calibration_sample, run_quantize_job

SENTENCES = [
    "vitamin d deficiency and bone density",
    "tumor cells respond to chemotherapy",
    "a short query",
    "neurons in the cortex store memory through synapse changes over many years of learning",
]


@pytest.fixture(scope="module")
def tiny_model(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_model(tmp_path_factory.mktemp("quantize") / "model", seed=3)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def subset_ndcg(encoder: OnnxEncoder, docs, qids, texts, qrels) -> float:
    """nDCG@10 of a brute-force numpy ranking of the gate's documents (checked free of near-ties)."""
    scores = encoder.encode(texts) @ encoder.encode([doc.full_text() for doc in docs], kind="passage").T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :11]
    assert (-np.diff(np.take_along_axis(scores, order, axis=1), axis=1) > 1e-6).all()
    ranking = {qid: [docs[p].id for p in row[:10]] for qid, row in zip(qids, order, strict=True)}
    return ndcg_at_k(ranking, qrels, 10)


def test_report_matches_the_files_the_model_and_an_independent_gate(
    tiny_model: Path, tmp_path: Path, beir_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    spec = QuantizeSpec(model=str(tiny_model), out=tmp_path / "q", dataset=str(beir_dir), gate_docs=20,
                        latency_queries=4, threads=1, tolerance=0.01)  # fmt: skip
    report = run_quantize_job(spec)
    fp32_dir, int8_dir = tmp_path / "q" / "fp32", tmp_path / "q" / "int8"
    assert report["fp32_model_bytes"] == (fp32_dir / "model.onnx").stat().st_size
    assert report["int8_model_bytes"] == (int8_dir / "model.onnx").stat().st_size < report["fp32_model_bytes"]
    assert report["int8_folder_bytes"] == folder_bytes(int8_dir)
    assert report["mode"] == "dynamic"
    assert report["latency_queries"] == "first 4 train queries, batch 1"
    assert report["fp32_encode_ms_p50"] > 0
    assert report["int8_encode_ms_p50"] > 0

    fp32, int8 = OnnxEncoder(fp32_dir, threads=1), OnnxEncoder(int8_dir, threads=1)
    torch_vectors = SentenceTransformer(str(tiny_model), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    fp32_vectors, int8_vectors = fp32.encode(SENTENCES), int8.encode(SENTENCES)
    assert np.min(np.sum(fp32_vectors * torch_vectors, axis=1)) >= 0.9999  # the export is faithful
    assert np.min(np.sum(int8_vectors * fp32_vectors, axis=1)) >= 0.99  # int8 stays close to fp32

    dataset = load_beir(beir_dir)
    docs = gate_subset(dataset, "train", distractors=20, seed=0)
    qids, texts, qrels = dataset.split_queries("train")
    reference, candidate = (subset_ndcg(encoder, docs, qids, texts, qrels) for encoder in (fp32, int8))
    assert report["gate_split"] == "train"
    assert report["gate_queries"] == len(qids) == 5
    assert report["gate_documents"] == len(docs)
    assert report["gate_ndcg_reference"] == pytest.approx(reference, abs=1e-9)
    assert report["gate_ndcg_candidate"] == pytest.approx(candidate, abs=1e-9)
    assert report["gate_passed"] == (reference - candidate <= 0.01)


def test_static_mode_calibrates_on_seeded_corpus_passages(tiny_model: Path, tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    sample = calibration_sample(dataset, 16, seed=0)
    passages = [doc.full_text() for doc in dataset.corpus]
    assert len(sample) == len(set(sample)) == 16
    assert set(sample) <= set(passages)
    assert [passages.index(text) for text in sample] == sorted(passages.index(text) for text in sample)
    assert calibration_sample(dataset, 16, seed=0) == sample != calibration_sample(dataset, 16, seed=1)
    assert len(calibration_sample(dataset, 10_000, seed=0)) == len(passages)
    spec = QuantizeSpec(model=str(tiny_model), out=tmp_path / "q", mode="static", dataset=str(beir_dir),
                        gate_docs=10, calibration_texts=16, latency_queries=2, threads=1)  # fmt: skip
    report = run_quantize_job(spec)
    assert report["mode"] == "static"
    fp32, int8 = OnnxEncoder(tmp_path / "q" / "fp32", threads=1), OnnxEncoder(tmp_path / "q" / "int8", threads=1)
    assert np.min(np.sum(fp32.encode(SENTENCES) * int8.encode(SENTENCES), axis=1)) >= 0.98


def test_bad_settings_fail_before_anything_is_written(tmp_path: Path, write_beir) -> None:
    with pytest.raises(ValueError, match="unknown mode 'int4': use one of dynamic, static"):
        QuantizeSpec(model="minilm", out=tmp_path / "q", mode="int4")
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        QuantizeSpec(model="minilm", out=tmp_path / "q", tolerance=-0.1)
    with pytest.raises(ValueError, match="latency_queries must be >= 1"):
        QuantizeSpec(model="minilm", out=tmp_path / "q", latency_queries=0)
    beir = write_beir(tmp_path / "no-train")
    (beir / "qrels" / "train.tsv").unlink()
    with pytest.raises(ValueError, match="no qrels for split 'train'"):
        run_quantize_job(QuantizeSpec(model="minilm", out=tmp_path / "q", dataset=str(beir)))
    assert not (tmp_path / "q").exists()  # refused before the export
