"""Fitting the table: the loss falls and held-out cosine rises where the targets are reachable; unseen rows keep
their init; the whole build publishes a loadable folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compression.static import (
    STATIC_REPORT_FILE,
    StaticConfig,
    StaticEncoder,
    build_static_encoder,
    map_init,
    static_tokenizer,
    train_static,
)
from compression.static.encoder import pool_rows

FIT = StaticConfig(epochs=30, learning_rate=0.05, batch_size=32, max_seq_length=32, init_map="none")
SEEN_WORDS = (
    "vitamin deficiency bone density calcium tumor cells cancer chemotherapy metastasis cardiac heart failure blood "
    "pressure artery neurons brain cortex memory synapse viral infection influenza vaccine"
).split()
UNSEEN_WORDS = "immune response protein gene expression mice patients trial risk dose receptor enzyme pathway".split()


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy(tiny_teacher, make_sentences, random_table, vocab_size):
    """Targets from a known table over 40 words, so a table that reproduces them exists; a different start."""
    known = np.random.default_rng(11).standard_normal(random_table.shape).astype(np.float32)
    texts, held_out = make_sentences(300, 0), make_sentences(60, 1)
    tokenizer = static_tokenizer(tiny_teacher, FIT.max_seq_length)
    targets = pool_rows(known, *tokenizer.flat(texts))
    held_out_targets = pool_rows(known, *tokenizer.flat(held_out))
    return random_table, texts, targets, held_out, held_out_targets


@pytest.mark.parametrize("optimizer", ["sparse-adam", "adamw"])
def test_training_approaches_reachable_targets(tiny_teacher, toy, optimizer):
    start, texts, targets, held_out, held_out_targets = toy
    config = StaticConfig(**{**FIT.to_dict(), "optimizer": optimizer})
    fitted, report = train_static(start, tiny_teacher, texts, targets, config, held_out, held_out_targets,
                                  show_progress=False)  # fmt: skip
    assert fitted.shape == start.shape
    assert fitted.dtype == np.float32
    assert len(report.epoch_losses) == config.epochs
    assert report.steps == config.epochs * 10
    assert report.epoch_losses[-1] < 0.2 * report.epoch_losses[0]
    assert report.eval_cosine_before < 0.5 < 0.9 < report.eval_cosine_after
    assert report.train_cosine_after > report.train_cosine_before
    tokenizer = static_tokenizer(tiny_teacher, config.max_seq_length)  # the report's figure, recomputed apart
    cosines = np.sum(pool_rows(fitted, *tokenizer.flat(held_out)) * held_out_targets, axis=1)
    assert abs(float(cosines.mean()) - report.eval_cosine_after) < 1e-5
    assert report.rows_trained == np.unique(tokenizer.flat(texts)[0]).size < start.shape[0]


def test_sparse_adam_leaves_unseen_rows_at_their_init(tiny_teacher, toy):
    start, texts, targets, *_ = toy
    config = StaticConfig(epochs=2, init_map="none")
    fitted, _ = train_static(start, tiny_teacher, texts, targets, config, show_progress=False)
    seen = np.zeros(start.shape[0], dtype=bool)
    seen[static_tokenizer(tiny_teacher, 32).flat(texts)[0]] = True
    scaled = start / np.linalg.norm(start, axis=1).mean()  # the fit works at mean row norm 1
    np.testing.assert_allclose(fitted[~seen], scaled[~seen], rtol=1e-6, atol=1e-7)
    assert not np.allclose(fitted[seen], scaled[seen], atol=1e-3)


def test_training_is_seeded(tiny_teacher, toy):
    start, texts, targets, *_ = toy
    runs = [train_static(start, tiny_teacher, texts, targets, StaticConfig(epochs=2, seed=seed, init_map="none"),
                         show_progress=False)[0] for seed in (3, 3, 4)]  # fmt: skip
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)
    assert not np.allclose(runs[0], runs[2], atol=1e-4)


def test_linear_map_reaches_unseen_tokens(tiny_teacher, make_sentences, random_table):
    """Targets a linear function of the init rows away: the closed-form map alone recovers them, on held-out texts
    whose words never occur in training (their rows are moved by the map, not by gradients)."""
    rng = np.random.default_rng(5)
    mixing, shift = rng.standard_normal((16, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    known = random_table @ mixing + 0.3 * shift
    texts, unseen = make_sentences(300, 0, SEEN_WORDS), make_sentences(60, 1, UNSEEN_WORDS)
    tokenizer = static_tokenizer(tiny_teacher, 32)
    targets, unseen_targets = pool_rows(known, *tokenizer.flat(texts)), pool_rows(known, *tokenizer.flat(unseen))
    assert not set(tokenizer.flat(texts)[0].tolist()) & set(tokenizer.flat(unseen)[0].tolist())
    for init_map, low, high in (("none", -1.0, 0.2), ("center", -1.0, 0.2), ("linear", 0.95, 1.0)):
        config = StaticConfig(epochs=0, init_map=init_map)
        _, report = train_static(random_table, tiny_teacher, texts, targets, config, unseen, unseen_targets,
                                 show_progress=False)  # fmt: skip
        assert report.eval_cosine_mapped == report.eval_cosine_after
        assert report.steps == 0
        assert low < report.eval_cosine_mapped <= high + 1e-6, init_map
    centred = map_init(random_table, "center", np.zeros(0, np.int64), np.zeros(0, np.int64), targets, 10)
    np.testing.assert_allclose(centred.mean(axis=0), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="init_map none"):
        train_static(random_table, tiny_teacher, [], np.zeros((0, 16), np.float32), config, show_progress=False)


def test_rank_loss_needs_documents_and_trains(tiny_teacher, toy):
    start, texts, targets, held_out, held_out_targets = toy
    config = StaticConfig(**{**FIT.to_dict(), "loss": "mse+rank", "epochs": 10})
    with pytest.raises(ValueError, match="teacher_documents"):
        train_static(start, tiny_teacher, texts, targets, config, show_progress=False)
    _, report = train_static(start, tiny_teacher, texts, targets, config, held_out, held_out_targets,
                             teacher_documents=targets[:100], show_progress=False)  # fmt: skip
    assert report.epoch_losses[-1] < 0.5 * report.epoch_losses[0]
    assert report.eval_cosine_after > report.eval_cosine_before + 0.2


def test_mismatched_inputs_are_refused(tiny_teacher, toy):
    start, texts, targets, *_ = toy
    with pytest.raises(ValueError, match="one target row per text"):
        train_static(start, tiny_teacher, texts[:-1], targets, FIT, show_progress=False)
    with pytest.raises(ValueError, match="-d"):
        train_static(start, tiny_teacher, texts, targets[:, :8], FIT, show_progress=False)
    with pytest.raises(ValueError, match="no training texts"):
        train_static(start, tiny_teacher, [], np.zeros((0, 16), dtype=np.float32), FIT, show_progress=False)


def test_build_publishes_a_loadable_encoder(tiny_teacher, make_sentences, tmp_path):
    from sentence_transformers import SentenceTransformer

    teacher = SentenceTransformer(str(tiny_teacher), device="cpu")
    teacher.max_seq_length = 32
    texts, held_out = make_sentences(200, 2), make_sentences(40, 3)
    targets, held_out_targets = teacher.encode(texts), teacher.encode(held_out)
    config = StaticConfig(epochs=5, learning_rate=0.01, batch_size=32)
    report = build_static_encoder(tiny_teacher, texts, targets, tmp_path / "static", config, held_out,
                                  held_out_targets, show_progress=False)  # fmt: skip
    assert report.dim == 32
    assert report.vocab_size == 30522
    assert report.init_seconds > 0
    assert report.train.eval_cosine_after > report.train.eval_cosine_before
    encoder = StaticEncoder(tmp_path / "static")
    cosines = np.sum(encoder.encode(held_out) * held_out_targets, axis=1)
    assert abs(float(cosines.mean()) - report.train.eval_cosine_after) < 1e-4
    stored = json.loads((tmp_path / "static" / STATIC_REPORT_FILE).read_text())
    assert stored["config"] == config.to_dict()
    assert len(stored["train"]["epoch_losses"]) == 5
    assert encoder.config.trained
    assert encoder.config.max_tokens == 30
    assert encoder.model_bytes() == report.model_bytes
