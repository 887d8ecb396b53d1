import numpy as np
import pytest

from compression.encoders import FakeEncoder
from search.data.datasets import load_beir
from search.evaluation.metrics import ndcg_at_k
from search.evaluation.quantize_gate import agreement_gate, gate_subset, quality_gate


class BrokenEncoder(FakeEncoder):
    """A deliberately broken 'int8' model: its vectors are mostly noise."""

    def encode(self, texts, kind="query", batch_size=32):
        clean = super().encode(texts, kind, batch_size)
        noise = np.random.default_rng(len(texts)).standard_normal(clean.shape).astype(np.float32)
        mixed = 0.1 * clean + noise
        return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def test_gate_passes_an_identical_model_and_fires_on_a_broken_one(beir_dir):
    dataset = load_beir(beir_dir)
    same = quality_gate(FakeEncoder(dim=256), FakeEncoder(dim=256), dataset, split="train", distractors=20)
    assert same.passed
    assert same.drop == 0.0
    assert same.queries == 5
    broken = quality_gate(FakeEncoder(dim=256), BrokenEncoder(dim=256), dataset, split="train", distractors=20)
    assert not broken.passed
    assert broken.drop > 0.005
    assert broken.to_dict()["passed"] is False


def test_gate_refuses_test_queries(beir_dir):
    with pytest.raises(ValueError, match="never looks at 'test' queries"):
        quality_gate(FakeEncoder(), FakeEncoder(), load_beir(beir_dir), split="test")


def test_gate_subset_keeps_judged_documents(beir_dir):
    dataset = load_beir(beir_dir)
    docs = gate_subset(dataset, "train", distractors=7, seed=0)
    judged = {d for per in dataset.qrels["train"].values() for d in per}
    assert judged <= {d.id for d in docs}
    assert len(docs) == len(judged) + 7


def test_gate_ndcg_equals_an_independent_numpy_ranking_of_the_subset(beir_dir):
    dataset = load_beir(beir_dir)
    reference, candidate = FakeEncoder(dim=256), FakeEncoder(dim=8)
    result = quality_gate(reference, candidate, dataset, split="train", tolerance=0.01, distractors=20)
    docs = gate_subset(dataset, "train", distractors=20, seed=0)
    qids, texts, qrels = dataset.split_queries("train")
    expected = []
    for encoder in (reference, candidate):
        scores = encoder.encode(texts) @ encoder.encode([d.full_text() for d in docs], kind="passage").T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :11]
        assert (-np.diff(np.take_along_axis(scores, order, axis=1), axis=1) > 1e-5).all()  # no near-ties in the top 10
        ranking = {q: [docs[p].id for p in row[:10]] for q, row in zip(qids, order, strict=True)}
        expected.append(ndcg_at_k(ranking, qrels, 10))
    assert result.ndcg_reference == pytest.approx(expected[0], abs=1e-9)
    assert result.ndcg_candidate == pytest.approx(expected[1], abs=1e-9)
    assert result.documents == len(docs)
    assert result.drop == pytest.approx(expected[0] - expected[1])
    assert result.passed == (expected[0] - expected[1] <= 0.01)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_agreement_gate_equals_an_independent_top10_overlap_and_fires_on_noise() -> None:
    rng = np.random.default_rng(0)
    docs = unit(rng.standard_normal((300, 16))).astype(np.float32)
    teacher = unit(rng.standard_normal((40, 16))).astype(np.float32)
    fp32 = unit(teacher + 0.05 * rng.standard_normal(teacher.shape)).astype(np.float32)
    slightly_off = unit(fp32 + 0.01 * rng.standard_normal(fp32.shape)).astype(np.float32)
    broken = unit(rng.standard_normal(fp32.shape)).astype(np.float32)

    def overlap(queries: np.ndarray) -> float:  # recall@10 vs teacher, by argsort
        want, got = np.argsort(-(teacher @ docs.T), axis=1)[:, :10], np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)]))

    good = agreement_gate(fp32, slightly_off, teacher, docs, tolerance=0.05)
    assert good.fp32_recall == pytest.approx(overlap(fp32), abs=1e-9)
    assert good.int8_recall == pytest.approx(overlap(slightly_off), abs=1e-9)
    assert good.cosine_to_fp32 == pytest.approx(float(np.mean(np.sum(fp32 * slightly_off, axis=1))), abs=1e-5)
    assert good.passed
    assert good.texts == 40
    bad = agreement_gate(fp32, broken, teacher, docs, tolerance=0.05)
    assert not bad.passed
    assert bad.drop > 0.5
    assert bad.cosine_to_fp32 < 0.5
    assert bad.to_dict()["passed"] is False
    assert bad.to_dict()["recall_drop"] == pytest.approx(bad.drop)
    with pytest.raises(ValueError, match="tolerance"):
        agreement_gate(fp32, broken, teacher, docs, tolerance=-0.1)
    with pytest.raises(ValueError, match="differ"):
        agreement_gate(fp32, broken[:5], teacher, docs)
