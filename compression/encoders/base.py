"""The `Encoder` protocol every encoder follows, the text kinds, and the small helpers all encoders share.

Stdlib and numpy only: the torch-free ONNX query path imports this module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

TextKind = Literal["query", "passage"]
TEXT_KINDS: tuple[TextKind, ...] = ("query", "passage")


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        """Encode `texts` as queries or passages into an (n, dim) float32 array of unit vectors."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies this encoder's vector space: stored in index metadata and cache keys."""
        ...

    def model_bytes(self) -> int:
        """Size of the model files on disk."""
        ...


@runtime_checkable
class TimedEncoder(Protocol):
    """An encoder that can say how much of an encode call was tokenisation (optional capability)."""

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """Like `encode`, and also return the seconds spent tokenising (included in no other stage)."""
        ...


def encode_timed(
    encoder: Encoder, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
) -> tuple[np.ndarray, float]:
    """Encode `texts` and return (vectors, tokenize_seconds); encoders without the split report 0 tokenize seconds,
    so their tokenisation stays inside the encode time."""
    if isinstance(encoder, TimedEncoder):
        return encoder.encode_timed(texts, kind=kind, batch_size=batch_size)
    return encoder.encode(texts, kind=kind, batch_size=batch_size), 0.0


def check_kind(kind: str) -> None:
    if kind not in TEXT_KINDS:
        raise ValueError(f"unknown text kind {kind!r}: use one of {', '.join(TEXT_KINDS)}")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
