"""Training, the held-out figures and saving, end to end on tiny seeded models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.distill import CONFIG_FILE, REPORT_FILE, DistillConfig, distill
from compression.encoders import FakeEncoder, load_encoder


@pytest.fixture(scope="module")
def distilled(tiny_teacher: Path, tiny_student: Path, tmp_path_factory: pytest.TempPathFactory, make_sentences):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("distilled") / "student"
    config = DistillConfig(
        student=str(tiny_student),
        teacher=str(tiny_teacher),
        loss="mse+kl",
        projection="auto",
        kl_weight=0.1,
        temperature=0.1,
        epochs=6,
        learning_rate=2e-3,
        batch_size=16,
        max_seq_length=32,
        warmup_ratio=0.1,
        seed=0,
    )
    train, held_out = make_sentences(64, 10), make_sentences(24, 11)
    report = distill(train, out, config, eval_texts=held_out, threads=1, show_progress=False)
    return report, out, held_out


def test_distillation_lowers_the_loss_and_brings_held_out_vectors_closer(distilled: tuple, tiny_teacher: Path) -> None:
    from sentence_transformers import SentenceTransformer

    report, out, held_out = distilled
    assert len(report.epoch_losses) == 6
    assert report.steps == 6 * 4
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.projection_added
    assert report.student_dim == report.teacher_dim == 48
    assert report.eval_cosine_after > report.eval_cosine_before + 0.002
    # check it independently, on the saved folder
    teacher = SentenceTransformer(str(tiny_teacher), device="cpu").encode(held_out, convert_to_numpy=True)
    student = SentenceTransformer(str(out), device="cpu", local_files_only=True).encode(held_out, convert_to_numpy=True)
    assert float(np.mean(np.sum(teacher * student, axis=1))) == pytest.approx(report.eval_cosine_after, abs=1e-4)


def test_saved_student_is_a_sentence_transformers_folder_with_the_teachers_dim(distilled: tuple) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    report, out, held_out = distilled
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert [type(m) for m in model] == [Transformer, Pooling, Dense, Normalize]
    assert model.get_embedding_dimension() == 48
    assert model.max_seq_length == 128  # the base model's inference length, not the training truncation (32)
    vectors = model.encode(held_out[:4], convert_to_numpy=True)
    assert vectors.shape == (4, 48)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert DistillConfig.from_dict(json.loads((out / CONFIG_FILE).read_text())) == report.config
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["epoch_losses"] == pytest.approx(report.epoch_losses)
    assert saved["texts"] == 64
    assert saved["output_dir"] == str(out.resolve())
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_training_is_seeded(tiny_teacher: Path, tiny_student: Path, tmp_path: Path, make_sentences) -> None:
    config = DistillConfig(student=str(tiny_student), teacher=str(tiny_teacher), loss="mse", projection="auto",
                           learning_rate=1e-4, epochs=1, batch_size=8, max_seq_length=16, seed=3)  # fmt: skip
    texts = make_sentences(16, 12)
    first = distill(texts, tmp_path / "a", config, threads=1, show_progress=False)
    second = distill(texts, tmp_path / "b", config, threads=1, show_progress=False)
    assert first.epoch_losses == second.epoch_losses  # the same computation, run twice
    assert not first.targets_from_cache
    assert second.targets_from_cache
    other = distill(texts, tmp_path / "c", DistillConfig(**{**config.to_dict(), "seed": 4}), threads=1,
                    show_progress=False)  # fmt: skip
    assert other.epoch_losses != first.epoch_losses


def test_neighbour_batching_trains_in_the_students_own_dim(
    tiny_teacher: Path, tiny_student: Path, tmp_path: Path, make_sentences
) -> None:
    config = DistillConfig(
        student=str(tiny_student),
        teacher=str(tiny_teacher),
        loss="kl",
        projection="never",
        batching="neighbours",
        epochs=2,
        batch_size=8,
        max_seq_length=16,
        learning_rate=2e-3,
    )
    report = distill(make_sentences(48, 13), tmp_path / "s", config, threads=1, show_progress=False)
    assert report.student_dim == 32
    assert not report.projection_added
    assert report.steps == 12
    assert all(np.isfinite(report.epoch_losses))


def test_rank_distillation_against_a_frozen_document_tower(
    tiny_teacher: Path, tiny_student: Path, tmp_path: Path, make_sentences
) -> None:
    from sentence_transformers import SentenceTransformer

    teacher, student = load_encoder(str(tiny_teacher)), load_encoder(str(tiny_student))
    docs = make_sentences(40, 20)
    teacher_docs, student_docs = teacher.encode(docs, kind="passage"), student.encode(docs, kind="passage")
    config = DistillConfig(student=str(tiny_student), teacher=str(tiny_teacher), loss="rank", projection="never",
                           epochs=5, batch_size=8, max_seq_length=16, learning_rate=2e-3, label_boost=2.0)  # fmt: skip
    texts, held_out = make_sentences(48, 21), make_sentences(16, 22)
    positives = [[i % 40] if i < 8 else [] for i in range(48)]
    report = distill(texts, tmp_path / "s", config, teacher=teacher, eval_texts=held_out,
                     threads=1, show_progress=False, teacher_documents=teacher_docs,
                     student_documents=student_docs, positives=positives)  # fmt: skip
    assert report.student_dim == 32
    assert not report.projection_added
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    # the held-out top-10 overlap, recomputed from the saved student at the training truncation
    saved = SentenceTransformer(str(tmp_path / "s"), device="cpu", local_files_only=True)
    saved.max_seq_length = 16
    reference = SentenceTransformer(str(tiny_teacher), device="cpu")
    reference.max_seq_length = 16
    student_top = np.argsort(-(saved.encode(held_out) @ student_docs.T), axis=1)[:, :10]
    teacher_top = np.argsort(-(reference.encode(held_out) @ teacher_docs.T), axis=1)[:, :10]
    overlap = np.mean([len(set(s) & set(t)) / 10 for s, t in zip(student_top, teacher_top, strict=True)])
    assert report.eval_top10_overlap_after == pytest.approx(overlap, abs=0.0125)  # a near-tie may swap once or twice
    with pytest.raises(ValueError, match="needs teacher_documents"):
        distill(texts, tmp_path / "t", config, teacher=teacher, threads=1, show_progress=False)
    with pytest.raises(ValueError, match="32-d but its document set is 48-d"):
        distill(texts, tmp_path / "u", config, teacher=teacher, threads=1, show_progress=False,
                teacher_documents=teacher_docs)  # fmt: skip


def test_distill_rejects_bad_arguments(tmp_path: Path, make_sentences) -> None:
    teacher = FakeEncoder(dim=8)
    with pytest.raises(ValueError, match="at least 2 training texts"):
        distill(["one text"], tmp_path / "a", DistillConfig(loss="kl"), teacher=teacher, show_progress=False)
    with pytest.raises(ValueError, match="use cpu or cuda"):
        distill(make_sentences(4, 0), tmp_path / "b", teacher=teacher, device="tpu", show_progress=False)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        distill(make_sentences(4, 0), tmp_path / "c", teacher=teacher, threads=0, show_progress=False)


@pytest.mark.slow
def test_minilm_student_gets_a_projection_to_the_teachers_768_dims(tmp_path: Path, make_sentences) -> None:
    """The real minilm path (384 -> Dense 768 -> Normalize), with a fake 768-d teacher instead of the real one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    config = DistillConfig(student="minilm", loss="mse", projection="auto", learning_rate=1e-4, epochs=1,
                           batch_size=8, max_seq_length=32, projection_fit_texts=16)  # fmt: skip
    report = distill(make_sentences(16, 20), tmp_path / "minilm", config, teacher=FakeEncoder(dim=768), threads=1)
    assert report.projection_added
    assert report.student_dim == 768
    model = SentenceTransformer(str(tmp_path / "minilm"), device="cpu", local_files_only=True)
    assert [type(m) for m in model] == [Transformer, Pooling, Dense, Normalize]
    vectors = model.encode(make_sentences(3, 21), convert_to_numpy=True)
    assert vectors.shape == (3, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_frozen_embeddings_stay_bit_identical_and_the_rest_moves(
    tiny_teacher: Path, tiny_student: Path, make_sentences
) -> None:
    from compression.distill import build_student, compute_teacher_targets, train_student

    texts = make_sentences(48, 5)
    teacher = load_encoder(str(tiny_teacher))
    config = DistillConfig(student="teacher-layers:1", teacher=str(tiny_teacher), loss="mse", epochs=2,
                           learning_rate=5e-3, batch_size=8, max_seq_length=16, weight_decay=0.1)  # fmt: skip
    targets, _ = compute_teacher_targets(teacher, texts, config.max_seq_length, show_progress=False, cache_dir=None)

    def trained(freeze: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        student = build_student(replace(config, freeze_embeddings=freeze), targets.shape[1])
        before = {name: p.detach().clone() for name, p in student.model.named_parameters()}
        train_student(student.model, texts, targets, replace(config, freeze_embeddings=freeze), show_progress=False)
        return before, {name: p.detach().clone() for name, p in student.model.named_parameters()}

    before, after = trained(freeze=True)
    tables = [name for name in before if any(t in name for t in ("word_embeddings", "position_embeddings"))]
    assert tables  # the tiny BERT has both tables
    for name in tables:  # bitwise: no gradient, no weight decay, no update at all
        assert torch.equal(before[name], after[name]), name
    moved = [name for name in before if name not in tables and not torch.equal(before[name], after[name])]
    assert any("layer" in name for name in moved)  # the transformer layers did train
    before, after = trained(freeze=False)
    assert not all(torch.equal(before[name], after[name]) for name in tables)  # without freezing they move


def test_dropout_off_makes_training_forward_passes_deterministic(tiny_student: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from compression.distill.students import set_dropout
    from compression.distill.train import embed_for_training

    model = SentenceTransformer(str(tiny_student), device="cpu")
    model.train()
    texts = ["gene expression in mice", "heart failure risk"]
    torch.manual_seed(0)
    noisy = [embed_for_training(model, texts, "cpu").detach() for _ in range(2)]
    assert not torch.allclose(noisy[0], noisy[1])  # dropout is on in train mode
    assert set_dropout(model, enabled=False) > 0
    clean = [embed_for_training(model, texts, "cpu").detach() for _ in range(2)]
    torch.testing.assert_close(clean[0], clean[1])
    model.eval()
    torch.testing.assert_close(clean[0], embed_for_training(model, texts, "cpu").detach(), atol=1e-5, rtol=1e-5)


def test_curriculum_stages_order_corpus_and_query_texts() -> None:
    from compression.distill.train import curriculum_stages

    flags = [False, True, False, True, True]
    mixed = curriculum_stages(5, DistillConfig(), None)
    assert [rows.tolist() for rows in mixed] == [[0, 1, 2, 3, 4]]
    first = curriculum_stages(5, DistillConfig(curriculum="corpus-first"), flags)
    assert [rows.tolist() for rows in first] == [[0, 2], [1, 3, 4]]
    reverse = curriculum_stages(5, DistillConfig(curriculum="queries-first"), flags)
    assert [rows.tolist() for rows in reverse] == [[1, 3, 4], [0, 2]]
    only_queries = curriculum_stages(2, DistillConfig(curriculum="corpus-first"), [True, True])
    assert [rows.tolist() for rows in only_queries] == [[0, 1]]  # an empty stage is dropped
    with pytest.raises(ValueError, match="one flag per training text"):
        curriculum_stages(5, DistillConfig(curriculum="corpus-first"), None)
    with pytest.raises(ValueError, match="mixed, corpus-first, queries-first"):
        DistillConfig(curriculum="random")
    with pytest.raises(ValueError, match="second_stage_lr"):
        DistillConfig(second_stage_lr=0)


def test_a_curriculum_trains_each_stage_for_every_epoch(tiny_teacher: Path, make_sentences) -> None:
    from compression.distill import build_student, compute_teacher_targets, train_student

    texts = make_sentences(40, 6)
    flags = [i % 4 == 0 for i in range(40)]  # 10 query-like texts, 30 corpus texts
    teacher = load_encoder(str(tiny_teacher))
    config = DistillConfig(student="teacher-layers:1", teacher=str(tiny_teacher), loss="mse", epochs=2,
                           batch_size=8, max_seq_length=16, curriculum="corpus-first")  # fmt: skip
    targets, _ = compute_teacher_targets(teacher, texts, config.max_seq_length, show_progress=False)
    student = build_student(config, targets.shape[1])
    losses, steps, _ = train_student(student.model, texts, targets, config, show_progress=False, query_like=flags)
    assert len(losses) == 2 * 2
    assert steps == 2 * 4 + 2 * 2  # corpus: 4 batches an epoch, then queries: 2
    mixed = build_student(replace(config, curriculum="mixed"), targets.shape[1])
    losses, steps, _ = train_student(mixed.model, texts, targets, replace(config, curriculum="mixed"),
                                     show_progress=False)  # fmt: skip
    assert len(losses) == 2
    assert steps == 2 * 5
