"""Distillation on tiny seeded models: losses, layer pruning, projection fit, target cache, training, saving, data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.distill import (
    CONFIG_FILE,
    REPORT_FILE,
    DistillConfig,
    build_student,
    compute_teacher_targets,
    distill,
    distillation_loss,
    fit_projection,
    mse_loss,
    neighbour_order,
    select_layers,
    similarity_kl_loss,
)
from compression.encoders import FakeEncoder, load_encoder
from search.data.datasets import Dataset, Document, load_beir
from search.data.training_texts import check_no_test_queries, split_sentences, training_texts

WORDS = (
    "vitamin deficiency bone density calcium tumor cells cancer chemotherapy metastasis cardiac heart failure blood "
    "pressure artery neurons brain cortex memory synapse viral infection influenza vaccine immune response protein "
    "gene expression mice patients trial risk dose receptor enzyme pathway"
).split()


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def make_sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_teacher(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-d tiny teacher: hidden 32 -> mean pooling -> Dense(32, 48, tanh) -> Normalize."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("teacher") / "teacher", seed=0, dense_dim=48)


@pytest.fixture(scope="session")
def tiny_student(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-d tiny student: distillation adds a Dense 32 -> 48, as the minilm student gets 384 -> 768."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("student") / "student", seed=1)


@pytest.fixture(scope="session")
def tiny_four_layers(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer tiny BERT sentence model whose layers are told apart by their seeded weights."""
    root = tmp_path_factory.mktemp("four")
    return build_tiny_sentence_model(root / "model", seed=4, max_seq_length=64, num_layers=4)


# ---------------------------------------------------------------------------------------------------------- losses


def test_mse_is_the_mean_squared_distance() -> None:
    student = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    teacher = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    assert mse_loss(student, teacher).item() == pytest.approx(1.0)  # (2 + 0) / 2
    assert mse_loss(teacher, teacher).item() == 0.0
    with pytest.raises(ValueError, match="differ"):
        mse_loss(student, torch.zeros(2, 3))


def test_kl_is_zero_for_the_same_similarity_structure_and_positive_otherwise() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(8, 6, generator=generator), dim=-1)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator))
    rotated = teacher @ rotation  # same cosines, different vectors
    assert similarity_kl_loss(rotated, teacher, temperature=0.05).item() == pytest.approx(0.0, abs=1e-5)
    assert mse_loss(rotated, teacher).item() > 0.1
    other = torch.randn(8, 6, generator=generator)
    assert similarity_kl_loss(other, teacher, temperature=0.05).item() > 0.01
    # the student's dim may differ from the teacher's; a single text has nothing to compare with
    assert similarity_kl_loss(torch.randn(8, 3, generator=generator), teacher).item() > 0.0
    assert similarity_kl_loss(teacher[:1], teacher[:1]).item() == 0.0


def test_kl_masks_the_diagonal_and_is_finite_with_a_sharp_temperature() -> None:
    teacher = torch.eye(4)  # every pair orthogonal: a uniform distribution over the 3 others
    student = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    value = similarity_kl_loss(student, teacher, temperature=0.01)
    assert torch.isfinite(value) and value.item() > 0.0


def test_mixed_loss_is_mse_plus_weighted_kl() -> None:
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    unit_s, unit_t = (torch.nn.functional.normalize(x, dim=-1) for x in (student, teacher))
    mixed = distillation_loss(student, teacher, "mse+kl", kl_weight=0.5, temperature=0.1)
    expected = mse_loss(unit_s, unit_t) + 0.5 * similarity_kl_loss(unit_s, unit_t, 0.1)
    assert mixed.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="mse, kl, mse\\+kl"):
        distillation_loss(student, teacher, "cosine")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- config and students


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "cosine"}, "mse, kl, mse\\+kl"),
        ({"student": "bert-tiny"}, "minilm, teacher-layers:N"),
        ({"student": "teacher-layers:0"}, "teacher-layers:N"),
        ({"student": "teacher-layers:x"}, "teacher-layers:N"),
        ({"student": "teacher-layers:3,1"}, "increasing order"),
        ({"projection": "sometimes"}, "auto, never"),
        ({"temperature": 0.0}, "temperature"),
        ({"batch_size": 1}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"max_texts": 1}, "max_texts"),
        ({"kl_weight": -1.0}, "kl_weight"),
    ],
)
def test_config_validation_lists_the_allowed_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistillConfig(**overrides)


def test_config_round_trips_through_a_dict() -> None:
    config = DistillConfig(student="teacher-layers:6", loss="mse+kl", kl_weight=0.3)
    assert DistillConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown distill config keys"):
        DistillConfig.from_dict({"lr": 1.0})


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


def test_teacher_layers_student_is_pruned_and_saves_as_a_normal_model(tiny_four_layers: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    config = DistillConfig(student="teacher-layers:2", teacher=str(tiny_four_layers), max_seq_length=32)
    original = SentenceTransformer(str(tiny_four_layers), device="cpu")
    student = build_student(config, teacher_dim=32)
    assert student.kept_layers == [0, 3] and not student.projection_added
    layers = student.model[0].auto_model.encoder.layer
    old = original[0].auto_model.encoder.layer
    for new, index in zip(layers, [0, 3], strict=True):
        for (name, p_new), (_, p_old) in zip(new.named_parameters(), old[index].named_parameters(), strict=True):
            assert torch.equal(p_new, p_old), name
    student.model.save(str(tmp_path / "pruned"))
    loaded = SentenceTransformer(str(tmp_path / "pruned"), device="cpu", local_files_only=True)
    assert loaded[0].auto_model.config.num_hidden_layers == 2
    assert len(loaded[0].auto_model.encoder.layer) == 2
    vectors = loaded.encode(make_sentences(5, seed=3), convert_to_numpy=True)
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


def test_a_student_of_another_dim_needs_a_projection_unless_the_loss_is_kl(tiny_student: Path) -> None:
    with pytest.raises(ValueError, match="projection='auto'"):
        build_student(DistillConfig(student=str(tiny_student), projection="never"), teacher_dim=48)
    kl_only = build_student(DistillConfig(student=str(tiny_student), projection="never", loss="kl"), teacher_dim=48)
    assert kl_only.model.get_embedding_dimension() == 32 and not kl_only.projection_added


# ------------------------------------------------------------------------------------------------- teacher targets


def test_teacher_targets_are_cached_by_teacher_texts_and_length() -> None:
    teacher = FakeEncoder(dim=16)
    texts = make_sentences(10, seed=0)
    first, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert not cached and sum(teacher.calls) == 10
    second, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert cached and sum(teacher.calls) == 10  # the teacher was not called again
    np.testing.assert_array_equal(first, second)
    _, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert not cached
    _, cached = compute_teacher_targets(teacher, texts[::-1], max_seq_length=64, show_progress=False)
    assert not cached
    _, cached = compute_teacher_targets(FakeEncoder(dim=8), texts, max_seq_length=64, show_progress=False)
    assert not cached


def test_teacher_targets_truncate_the_teacher_to_the_student_length(tiny_teacher: Path) -> None:
    teacher = load_encoder(str(tiny_teacher), threads=1)
    long_text = " ".join(make_sentences(20, seed=5))
    short, _ = compute_teacher_targets(teacher, [long_text], max_seq_length=16, use_cache=False, show_progress=False)
    full, _ = compute_teacher_targets(teacher, [long_text], max_seq_length=128, use_cache=False, show_progress=False)
    assert not np.allclose(short, full)
    assert teacher._model.max_seq_length == 128  # restored afterwards


# -------------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="session")
def distilled(tiny_teacher: Path, tiny_student: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("distilled") / "student"
    config = DistillConfig(
        student=str(tiny_student),
        teacher=str(tiny_teacher),
        loss="mse+kl",
        kl_weight=0.1,
        temperature=0.1,
        epochs=6,
        learning_rate=2e-3,
        batch_size=16,
        max_seq_length=32,
        warmup_ratio=0.1,
        seed=0,
    )
    train, held_out = make_sentences(64, seed=10), make_sentences(24, seed=11)
    report = distill(train, out, config, eval_texts=held_out, threads=1, show_progress=False)
    return report, out, held_out


def test_distillation_lowers_the_loss_and_brings_held_out_vectors_closer(distilled: tuple, tiny_teacher: Path) -> None:
    from sentence_transformers import SentenceTransformer

    report, out, held_out = distilled
    assert len(report.epoch_losses) == 6
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.projection_added and report.student_dim == report.teacher_dim == 48
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
    assert saved["epoch_losses"] == pytest.approx(report.epoch_losses) and saved["texts"] == 64
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_training_is_seeded(tiny_teacher: Path, tiny_student: Path, tmp_path: Path) -> None:
    config = DistillConfig(
        student=str(tiny_student), teacher=str(tiny_teacher), epochs=1, batch_size=8, max_seq_length=16, seed=3
    )
    texts = make_sentences(16, seed=12)
    first = distill(texts, tmp_path / "a", config, threads=1, show_progress=False)
    second = distill(texts, tmp_path / "b", config, threads=1, show_progress=False)
    assert first.epoch_losses == second.epoch_losses
    assert second.targets_from_cache


# ------------------------------------------------------------------------------------------------------------ data


def test_training_texts_use_train_queries_and_never_test_queries(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    texts = training_texts(dataset, max_texts=None, seed=0)
    _, train_queries, _ = dataset.split_queries("train")
    _, test_queries, _ = dataset.split_queries("test")
    assert set(train_queries) <= set(texts)
    assert not set(test_queries) & set(texts)
    assert len(texts) == len(set(texts))
    assert any(text.startswith(("d ", "vitamin", "tumor")) or "note" in text for text in texts)  # corpus sentences
    assert training_texts(dataset, max_texts=None, seed=0) == texts
    assert training_texts(dataset, max_texts=None, seed=1) != texts
    assert len(training_texts(dataset, max_texts=7, seed=0)) == 7
    with pytest.raises(ValueError, match="held-out"):
        check_no_test_queries([*texts, test_queries[0]], dataset)


def test_corpus_text_identical_to_a_test_query_is_dropped() -> None:
    claim = "Vitamin D supplements increase bone density in older adults."
    other = "A second sentence that is long enough to be kept as a training text."
    dataset = Dataset(
        name="leaky",
        corpus=(Document("d1", "", f"{claim} {other}"),),
        queries={"q1": claim.lower().rstrip("."), "q2": "a train query about vaccines"},
        qrels={"test": {"q1": {"d1": 1}}, "train": {"q2": {"d1": 1}}},
    )
    texts = training_texts(dataset)
    assert claim not in texts and other in texts and "a train query about vaccines" in texts
    assert f"{claim} {other}" in texts  # a window holding the claim is corpus text, not the query itself


def test_split_sentences_keeps_abbreviations_and_decimals() -> None:
    text = "Levels rose to 1.8 vs. 2.0 in Fig. 2 (e.g. in mice). Results were clear! Did it work? Yes."
    assert split_sentences(text) == [
        "Levels rose to 1.8 vs. 2.0 in Fig. 2 (e.g. in mice).",
        "Results were clear!",
        "Did it work?",
        "Yes.",
    ]


@pytest.mark.slow
def test_minilm_student_gets_a_projection_to_the_teachers_768_dims(tmp_path: Path) -> None:
    """The real minilm path (384 -> Dense 768 -> Normalize), with a fake 768-d teacher instead of the real one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    config = DistillConfig(student="minilm", epochs=1, batch_size=8, max_seq_length=32, projection_fit_texts=16)
    report = distill(make_sentences(16, seed=20), tmp_path / "minilm", config, teacher=FakeEncoder(dim=768), threads=1)
    assert report.projection_added and report.student_dim == 768
    model = SentenceTransformer(str(tmp_path / "minilm"), device="cpu", local_files_only=True)
    assert [type(m) for m in model] == [Transformer, Pooling, Dense, Normalize]
    vectors = model.encode(make_sentences(3, seed=21), convert_to_numpy=True)
    assert vectors.shape == (3, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_neighbour_order_is_a_permutation_whose_batches_are_teacher_neighbours() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    labels = rng.integers(0, 8, size=256)
    targets = centres[labels] + 0.1 * rng.normal(size=(256, 16))
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    order = neighbour_order(targets.astype(np.float32), batch_size=32, rng=np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(256))

    def mean_in_batch_cosine(permutation: np.ndarray) -> float:
        batches = [targets[permutation[i : i + 32]] for i in range(0, 256, 32)]
        return float(np.mean([np.mean(batch @ batch.T) for batch in batches]))

    assert mean_in_batch_cosine(order) > mean_in_batch_cosine(rng.permutation(256)) + 0.3


def test_neighbour_batching_trains_and_is_validated(tiny_teacher: Path, tiny_student: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="random, neighbours"):
        DistillConfig(batching="nearest")  # type: ignore[arg-type]
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
    report = distill(make_sentences(48, seed=13), tmp_path / "s", config, threads=1, show_progress=False)
    assert report.student_dim == 32 and not report.projection_added and report.steps == 12
    assert all(np.isfinite(report.epoch_losses))


def test_ranking_kl_is_zero_for_the_teachers_own_ranking_and_grows_with_a_boost() -> None:
    from compression.distill import ranking_kl_loss

    generator = torch.Generator().manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(50, 16, generator=generator), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    assert float(ranking_kl_loss(texts, texts, docs, docs, 0.05)) == pytest.approx(0.0, abs=1e-6)
    # a rotated student space ranks the rotated documents exactly like the teacher: still zero
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    assert float(ranking_kl_loss(texts @ rotation, texts, docs @ rotation, docs, 0.05)) == pytest.approx(0, abs=1e-5)
    other = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    assert float(ranking_kl_loss(other, texts, docs, docs, 0.05)) > 0.1
    boost = torch.zeros(6, 50)
    boost[0, 3] = 5.0
    assert float(ranking_kl_loss(texts, texts, docs, docs, 0.05, boost)) > 0.0
    with pytest.raises(ValueError, match="50 student documents but 49"):
        ranking_kl_loss(texts, texts, docs, docs[:49])
    with pytest.raises(ValueError, match="ranks against a document set"):
        distillation_loss(texts, texts, "rank")


def test_length_grouping_keeps_every_text_and_pads_less() -> None:
    from compression.distill import length_grouped

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    order = length_grouped(rng.permutation(1000), lengths, 32, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))

    def padded_cost(permutation: np.ndarray) -> int:
        return sum(int(lengths[permutation[i : i + 32]].max()) * 32 for i in range(0, 1000, 32))

    assert padded_cost(order) < 0.7 * padded_cost(rng.permutation(1000))


def test_rank_distillation_against_a_frozen_document_tower(
    tiny_teacher: Path, tiny_student: Path, tmp_path: Path
) -> None:
    teacher, student = load_encoder(str(tiny_teacher)), load_encoder(str(tiny_student))
    docs = make_sentences(40, seed=20)
    teacher_docs, student_docs = teacher.encode(docs, kind="passage"), student.encode(docs, kind="passage")
    config = DistillConfig(student=str(tiny_student), teacher=str(tiny_teacher), loss="rank", projection="never",
                           epochs=5, batch_size=8, max_seq_length=16, learning_rate=2e-3, label_boost=2.0)  # fmt: skip
    texts = make_sentences(48, seed=21)
    positives = [[i % 40] if i < 8 else [] for i in range(48)]
    report = distill(texts, tmp_path / "s", config, teacher=teacher, eval_texts=make_sentences(16, seed=22),
                     threads=1, show_progress=False, teacher_documents=teacher_docs,
                     student_documents=student_docs, positives=positives)  # fmt: skip
    assert report.student_dim == 32 and not report.projection_added
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.eval_top10_overlap_before is not None and report.eval_top10_overlap_after is not None
    with pytest.raises(ValueError, match="needs teacher_documents"):
        distill(texts, tmp_path / "t", config, teacher=teacher, threads=1, show_progress=False)
    with pytest.raises(ValueError, match="32-d but its document set is 48-d"):
        distill(texts, tmp_path / "u", config, teacher=teacher, threads=1, show_progress=False,
                teacher_documents=teacher_docs)  # fmt: skip


def test_train_query_positives_map_train_queries_to_their_judged_documents(beir_dir: Path) -> None:
    from search.jobs.distill import train_query_positives

    dataset = load_beir(beir_dir)
    rows = {doc.id: row for row, doc in enumerate(dataset.corpus)}
    train_query = dataset.queries["t0"]  # judged in train: vitamin-2
    test_query = dataset.queries["q0"]  # judged in test only
    positives = train_query_positives(dataset, [train_query, test_query, "some corpus sentence"])
    assert positives == [[rows["vitamin-2"]], [], []]
