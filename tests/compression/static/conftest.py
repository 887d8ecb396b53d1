"""Tiny teachers, seeded tables and sentences for the static-encoder tests (handed out as fixtures, never imported)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from compression.static import StaticConfig, save_static

WORDS = (
    "vitamin deficiency bone density calcium tumor cells cancer chemotherapy metastasis cardiac heart failure blood "
    "pressure artery neurons brain cortex memory synapse viral infection influenza vaccine immune response protein "
    "gene expression mice patients trial risk dose receptor enzyme pathway"
).split()
TABLE_DIM = 16


def _make_sentences(n: int, seed: int, words: tuple[str, ...] | list[str] = tuple(WORDS)) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(list(words), size=int(rng.integers(3, 12)))) for _ in range(n)]


@pytest.fixture(scope="session")
def make_sentences() -> Callable[..., list[str]]:
    """`make_sentences(n, seed, words=WORDS)`: n seeded sentences of 3-11 of `words`."""
    return _make_sentences


@pytest.fixture(scope="session")
def tiny_teacher(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-d tiny teacher: BERT (hidden 32, MiniLM's tokenizer) -> mean pooling -> Normalize."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("teacher") / "teacher", seed=0)


@pytest.fixture(scope="session")
def tiny_dense_teacher(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-d tiny teacher: hidden 32 -> mean pooling -> Dense(32, 48, tanh) -> Normalize."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("dense") / "teacher", seed=3, dense_dim=48)


@pytest.fixture(scope="session")
def vocab_size(tiny_teacher: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_teacher / "tokenizer.json")).get_vocab_size()


@pytest.fixture(scope="session")
def random_table(vocab_size: int) -> np.ndarray:
    """A seeded (vocabulary size, 16) float32 table with row norms between 0.5 and 2."""
    rng = np.random.default_rng(7)
    table = rng.standard_normal((vocab_size, TABLE_DIM)).astype(np.float32)
    norms = rng.uniform(0.5, 2.0, size=(vocab_size, 1)).astype(np.float32)
    return table / np.linalg.norm(table, axis=1, keepdims=True) * norms


@pytest.fixture(scope="session")
def static_folder(tiny_teacher: Path, random_table: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 static folder holding `random_table`, the tiny teacher's tokenizer, max_seq_length 16."""
    out = tmp_path_factory.mktemp("static") / "fp32"
    save_static(random_table, tiny_teacher, out, StaticConfig(max_seq_length=16), trained=False)
    return out
