"""A deterministic bag-of-words encoder: fast, model-free, for tests and API checks."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compression.encoders.base import TextKind, check_kind, count_truncated, l2_normalise

_TOKEN = re.compile(r"\w+")


@dataclass
class FakeEncoder:
    """Deterministic bag-of-words hashing encoder: no model, instant, and texts sharing words score high.

    `calls` records the size of every encode call (tests count model work with it); `count_tokens` counts the words
    it hashes (at least 1 per text) capped at `max_seq_length`, and is not an encode call."""

    dim: int = 32
    name: str = "fake"
    calls: list[int] = field(default_factory=list, repr=False)
    max_seq_length: int = 256

    def __post_init__(self) -> None:
        if self.dim < 2:
            raise ValueError(f"fake encoder dim must be >= 2, got {self.dim}")
        if self.max_seq_length < 1:
            raise ValueError(f"fake encoder max_seq_length must be >= 1, got {self.max_seq_length}")

    def _token_vector(self, token: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [_TOKEN.findall(text.lower()) or [text] for text in texts]

    def _embed(self, token_lists: list[list[str]]) -> np.ndarray:
        out = np.zeros((len(token_lists), self.dim), dtype=np.float32)
        for row, tokens in enumerate(token_lists):
            for token in tokens:
                out[row] += self._token_vector(token)
        return l2_normalise(out)

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        check_kind(kind)
        self.calls.append(len(texts))
        return self._embed(self._tokenize(texts))

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """`encode`, reporting the word splitting as the tokenize time."""
        check_kind(kind)
        self.calls.append(len(texts))
        started = time.perf_counter()
        token_lists = self._tokenize(texts)
        tokenize_seconds = time.perf_counter() - started
        return self._embed(token_lists), tokenize_seconds

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_truncated(
            lambda chunk: [len(tokens) for tokens in self._tokenize(chunk)], texts, self.max_seq_length
        )

    def identity(self) -> dict[str, Any]:
        return {"type": "fake", "name": self.name, "fingerprint": f"fake-{self.dim}", "dim": self.dim}

    def model_bytes(self) -> int:
        return 0
