"""Agreement with the teacher on held-out texts (the main job's pick) against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from search.evaluation.agreement import agreement, encode_p50_ms, interleaved_encode_ms, query_like


def brute_force_overlap(queries: np.ndarray, reference: np.ndarray, docs: np.ndarray, k: int) -> float:
    found = [set(np.argsort(-row)[:k]) for row in queries @ docs.T]
    wanted = [set(np.argsort(-row)[:k]) for row in reference @ docs.T]
    return float(np.mean([len(a & b) / k for a, b in zip(found, wanted, strict=True)]))


def test_agreement_is_the_top_k_overlap_and_mean_cosine(unit_vectors) -> None:
    docs = unit_vectors(300, 16, seed=0)
    teacher = unit_vectors(40, 16, seed=1)
    noisy = teacher + 0.3 * np.random.default_rng(2).standard_normal(teacher.shape).astype(np.float32)
    student = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    result = agreement(student, teacher, docs, k=10)
    # blocked exact search vs one numpy product: a near-tie at rank 10 may swap (0.0025 of the mean each), no more
    assert result.recall_vs_teacher == pytest.approx(brute_force_overlap(student, teacher, docs, 10), abs=0.006)
    assert result.cosine == pytest.approx(float(np.mean(np.sum(student * teacher, axis=1))), abs=1e-5)
    assert 0.0 < result.recall_vs_teacher < 1.0
    assert (result.texts, result.k) == (40, 10)
    assert agreement(teacher, teacher, docs, k=10).recall_vs_teacher == 1.0
    with pytest.raises(ValueError, match="differ"):
        agreement(student[:3], teacher, docs)


def test_encode_latency_is_timed_per_text_for_every_encoder() -> None:
    encoders = {"a": FakeEncoder(dim=8), "b": FakeEncoder(dim=16)}
    texts = [f"text {i}" for i in range(7)]
    seconds = interleaved_encode_ms(encoders, texts)
    assert set(seconds) == {"a", "b"}
    assert all(len(s) == 7 and (s > 0).all() for s in seconds.values())
    assert encoders["a"].calls.count(1) == 7 + 3  # every text alone, after three warm-up calls
    p50 = encode_p50_ms(encoders, texts)
    assert set(p50) == {"a", "b"}
    assert all(v > 0 for v in p50.values())
    with pytest.raises(ValueError, match="at least one text"):
        encode_p50_ms(encoders, [])


def test_query_like_keeps_the_short_texts_unless_too_few_are_short() -> None:
    texts = ["a short claim about cells", " ".join(["word"] * 40), "another short one", " ".join(["w"] * 33)]
    assert query_like(texts) == ["a short claim about cells", "another short one"]
    assert query_like(texts, max_words=3) == texts  # fewer than two short ones: keep them all
