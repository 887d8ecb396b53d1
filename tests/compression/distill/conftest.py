"""Tiny seeded models and sentences for the distillation tests (handed out as fixtures, never imported)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

WORDS = (
    "vitamin deficiency bone density calcium tumor cells cancer chemotherapy metastasis cardiac heart failure blood "
    "pressure artery neurons brain cortex memory synapse viral infection influenza vaccine immune response protein "
    "gene expression mice patients trial risk dose receptor enzyme pathway"
).split()


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def _make_sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]


@pytest.fixture(scope="session")
def make_sentences() -> Callable[[int, int], list[str]]:
    """`make_sentences(n, seed)`: n seeded sentences of 4-11 biomedical words."""
    return _make_sentences


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
