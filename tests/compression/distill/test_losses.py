"""The distillation losses, checked against hand values and an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.distill import distillation_loss, mse_loss, ranking_kl_loss, similarity_kl_loss


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def kl_rows(teacher_logits: np.ndarray, student_logits: np.ndarray) -> float:
    """mean_i KL(softmax(teacher_i) || softmax(student_i)), in float64."""
    log_p, log_q = log_softmax(teacher_logits), log_softmax(student_logits)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mse_is_the_mean_squared_distance() -> None:
    student = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    teacher = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    assert mse_loss(student, teacher).item() == pytest.approx(1.0)  # (2 + 0) / 2
    assert mse_loss(teacher, teacher).item() == 0.0
    with pytest.raises(ValueError, match="differ"):
        mse_loss(student, torch.zeros(2, 3))


def test_similarity_kl_matches_a_numpy_computation_over_the_off_diagonal() -> None:
    rng = np.random.default_rng(0)
    student, teacher = rng.standard_normal((7, 5)), rng.standard_normal((7, 4))  # dims may differ
    value = similarity_kl_loss(torch.from_numpy(student), torch.from_numpy(teacher), temperature=0.1)

    def off_diagonal_logits(x: np.ndarray) -> np.ndarray:
        cos = unit(x) @ unit(x).T / 0.1
        return np.stack([np.delete(row, i) for i, row in enumerate(cos)])

    expected = kl_rows(off_diagonal_logits(teacher), off_diagonal_logits(student))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_for_the_same_similarity_structure_and_positive_otherwise() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(8, 6, generator=generator), dim=-1)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator))
    rotated = teacher @ rotation  # same cosines, different vectors
    assert similarity_kl_loss(rotated, teacher, temperature=0.05).item() == pytest.approx(0.0, abs=1e-5)
    assert mse_loss(rotated, teacher).item() > 0.1
    other = torch.randn(8, 6, generator=generator)
    assert similarity_kl_loss(other, teacher, temperature=0.05).item() > 0.01
    assert similarity_kl_loss(teacher[:1], teacher[:1], temperature=0.05).item() == 0.0  # nothing to compare with


def test_kl_masks_the_diagonal_and_is_finite_with_a_sharp_temperature() -> None:
    teacher = torch.eye(4)  # every pair orthogonal: a uniform distribution over the 3 others
    student = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    value = similarity_kl_loss(student, teacher, temperature=0.01)
    assert torch.isfinite(value)
    assert value.item() > 0.0


def test_ranking_kl_with_a_boost_matches_a_numpy_computation() -> None:
    rng = np.random.default_rng(1)
    texts, student = unit(rng.standard_normal((5, 8))), unit(rng.standard_normal((5, 6)))
    teacher_docs, student_docs = unit(rng.standard_normal((30, 8))), unit(rng.standard_normal((30, 6)))
    boost = np.zeros((5, 30))
    boost[0, 3], boost[2, 7] = 3.0, 3.0
    tensors = (torch.from_numpy(x) for x in (student, texts, student_docs, teacher_docs, boost))
    value = ranking_kl_loss(*list(tensors)[:4], temperature=0.05, teacher_boost=torch.from_numpy(boost))
    expected = kl_rows(texts @ teacher_docs.T / 0.05 + boost, student @ student_docs.T / 0.05)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_ranking_kl_is_zero_for_the_teachers_own_ranking_in_any_rotation() -> None:
    generator = torch.Generator().manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(50, 16, generator=generator), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    assert float(ranking_kl_loss(texts, texts, docs, docs, 0.05)) == pytest.approx(0.0, abs=1e-6)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    assert float(ranking_kl_loss(texts @ rotation, texts, docs @ rotation, docs, 0.05)) == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="50 student documents but 49"):
        ranking_kl_loss(texts, texts, docs, docs[:49], 0.05)


def test_mixed_losses_are_mse_plus_weighted_terms_on_normalised_vectors() -> None:
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    unit_s, unit_t = unit(student.numpy().astype(np.float64)), unit(teacher.numpy().astype(np.float64))
    mse = float(np.mean(np.sum((unit_s - unit_t) ** 2, axis=1)))
    assert distillation_loss(student, teacher, "mse", 0.5, 0.1).item() == pytest.approx(mse, rel=1e-5)
    mixed = distillation_loss(student, teacher, "mse+kl", kl_weight=0.5, temperature=0.1)
    kl = similarity_kl_loss(torch.from_numpy(unit_s), torch.from_numpy(unit_t), 0.1).item()
    assert mixed.item() == pytest.approx(mse + 0.5 * kl, rel=1e-5)
    docs = torch.nn.functional.normalize(torch.randn(20, 5, generator=generator), dim=-1)
    mse_rank = distillation_loss(student, teacher, "mse+rank", 0.25, 0.1, documents=(docs, docs))
    rank = kl_rows(unit_t @ docs.numpy().T / 0.1, unit_s @ docs.numpy().T / 0.1)
    assert mse_rank.item() == pytest.approx(mse + 0.25 * rank, rel=1e-5)
    with pytest.raises(ValueError, match="mse, kl, mse\\+kl"):
        distillation_loss(student, teacher, "cosine", 1.0, 0.05)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ranks against a document set"):
        distillation_loss(student, teacher, "rank", 1.0, 0.05)
