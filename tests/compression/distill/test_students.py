"""Building students: layer selection and pruning, the least-squares projection, dims and losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compression.distill import DistillConfig, build_student, fit_projection, select_layers


def test_select_layers_spreads_evenly_and_keeps_first_and_last() -> None:
    assert select_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert select_layers(12, 4) == [0, 4, 7, 11]
    assert select_layers(12, 12) == list(range(12))
    assert select_layers(4, 2) == [0, 3]
    assert select_layers(12, 1) == [0]
    with pytest.raises(ValueError, match="1 <= N <= 12"):
        select_layers(12, 13)


def test_fit_projection_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    weight, bias = rng.standard_normal((8, 5)), rng.standard_normal(5)
    w_t, b = fit_projection(x, x @ weight + bias, ridge=1e-9)
    np.testing.assert_allclose(w_t, weight.T, atol=1e-4)
    np.testing.assert_allclose(b, bias, atol=1e-4)
    with pytest.raises(ValueError, match="200 inputs but 199 targets"):
        fit_projection(x, (x @ weight)[:199])


def test_teacher_layers_student_is_pruned_and_saves_as_a_normal_model(
    tiny_four_layers: Path, tmp_path: Path, make_sentences
) -> None:
    from sentence_transformers import SentenceTransformer

    config = DistillConfig(student="teacher-layers:2", teacher=str(tiny_four_layers), max_seq_length=32)
    original = SentenceTransformer(str(tiny_four_layers), device="cpu")
    student = build_student(config, teacher_dim=32)
    assert student.kept_layers == [0, 3]
    assert not student.projection_added
    assert student.inference_max_seq_length == 64
    assert student.model.max_seq_length == 32
    layers = student.model[0].auto_model.encoder.layer
    old = original[0].auto_model.encoder.layer
    for new, index in zip(layers, [0, 3], strict=True):
        for (name, p_new), (_, p_old) in zip(new.named_parameters(), old[index].named_parameters(), strict=True):
            assert torch.equal(p_new, p_old), name
    student.model.save(str(tmp_path / "pruned"))
    loaded = SentenceTransformer(str(tmp_path / "pruned"), device="cpu", local_files_only=True)
    assert loaded[0].auto_model.config.num_hidden_layers == 2
    assert len(loaded[0].auto_model.encoder.layer) == 2
    vectors = loaded.encode(make_sentences(5, 3), convert_to_numpy=True)
    assert vectors.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="1 <= N <= 4"):
        build_student(DistillConfig(student="teacher-layers:5", teacher=str(tiny_four_layers)), teacher_dim=32)


def test_teacher_layers_can_be_listed_explicitly(tiny_four_layers: Path) -> None:
    student = build_student(DistillConfig(student="teacher-layers:1,3", teacher=str(tiny_four_layers)), teacher_dim=32)
    assert student.kept_layers == [1, 3]
    assert student.model[0].auto_model.config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="indices 0..3"):
        build_student(DistillConfig(student="teacher-layers:1,4", teacher=str(tiny_four_layers)), teacher_dim=32)


def test_a_student_of_another_dim_needs_a_projection_unless_the_loss_ranks_or_is_kl(tiny_student: Path) -> None:
    with pytest.raises(ValueError, match="projection='auto'"):
        build_student(DistillConfig(student=str(tiny_student), projection="never", loss="mse"), teacher_dim=48)
    for loss in ("kl", "rank"):
        own_dim = build_student(DistillConfig(student=str(tiny_student), projection="never", loss=loss), 48)
        assert own_dim.model.get_embedding_dimension() == 32
        assert not own_dim.projection_added
    with pytest.raises(ValueError, match="needs fit_texts"):
        build_student(DistillConfig(student=str(tiny_student), projection="auto", loss="mse"), teacher_dim=48)


def test_the_projection_is_the_least_squares_fit_to_the_teachers_vectors(tiny_student: Path, make_sentences) -> None:
    """With fewer fit texts than the student has dims + 1, the fit is (almost) exact: the projected, normalised
    student vectors of the fit texts are the unit targets."""
    texts = make_sentences(24, 7)
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((24, 48)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    config = DistillConfig(student=str(tiny_student), projection="auto", loss="mse", max_seq_length=32)
    student = build_student(config, 48, texts, targets)
    assert student.projection_added
    assert student.model.get_embedding_dimension() == 48
    vectors = student.model.encode(texts, convert_to_numpy=True)
    # 24 texts < 33 parameters per output dim: the (lightly ridged) fit all but interpolates the targets
    cosines = np.sum(vectors * targets, axis=1)
    assert cosines.min() > 0.95  # an unfitted projection would give cosines near 0 with random targets
