"""The `Encoder` protocol every encoder follows, the text kinds, and the small helpers all encoders share.

Stdlib and numpy only: the torch-free ONNX query path imports this module."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

TextKind = Literal["query", "passage"]
TEXT_KINDS: tuple[TextKind, ...] = ("query", "passage")
# Token counting tokenises only the first `max_tokens * COUNT_CHARS_PER_TOKEN` characters of a text: English
# WordPiece/BPE tokens average 4-5 characters, so that prefix already fills the model's window, and a batch of long
# texts is counted in a fraction of the time a full tokenisation takes (the server counts tokens before any model
# work).
COUNT_CHARS_PER_TOKEN = 8


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int
    max_seq_length: int  # tokens a text keeps (special tokens included); `count_tokens` never says more

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        """Encode `texts` as queries or passages into an (n, dim) float32 array of unit vectors."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies this encoder's vector space: stored in index metadata and cache keys."""
        ...

    def model_bytes(self) -> int:
        """Size of the model files on disk."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees it, after truncation to its maximum length (special tokens included),
        without running the model: what a server bounds a request's work by."""
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


Features = TypeVar("Features")


def encode_in_length_order(
    texts: Sequence[str],
    batch_size: int,
    dim: int,
    tokenize: Callable[[list[str]], Features],
    forward: Callable[[Features], np.ndarray],
) -> tuple[np.ndarray, float]:
    """Encode `texts` in batches of `batch_size` texts of similar length (longest first, so batches pad less):
    `tokenize(batch)` then `forward(features)` (unit rows). Returns the (len(texts), dim) float32 rows in `texts`
    order and the seconds spent in `tokenize`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = np.argsort([-len(str(text)) for text in texts], kind="stable")
    tokenize_seconds = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        started = time.perf_counter()
        features = tokenize([str(texts[i]) for i in rows])
        tokenize_seconds += time.perf_counter() - started
        out[rows] = forward(features)
    return out, tokenize_seconds


def count_truncated(count: Callable[[list[str]], list[int]], texts: Sequence[str], max_tokens: int) -> list[int]:
    """Tokens per text truncated to `max_tokens`, where `count` tokenises texts (truncating or not) into counts.

    Bounded work: a long text is cut at a space before `max_tokens * COUNT_CHARS_PER_TOKEN` characters first. A cut
    text whose prefix already fills `max_tokens` has exactly `max_tokens`; one whose prefix does not (tokens of more
    than 8 characters on average, e.g. long unknown words) is counted again in full, so the count stays exact.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    limit = max_tokens * COUNT_CHARS_PER_TOKEN
    prefixes = [_cut(str(text), limit) for text in texts]
    counts = [min(n, max_tokens) for n in count(prefixes)] if prefixes else []
    cut_short = zip(prefixes, texts, counts, strict=True)
    again = [i for i, (prefix, text, n) in enumerate(cut_short) if len(prefix) < len(str(text)) and n < max_tokens]
    if again:
        for i, n in zip(again, count([str(texts[i]) for i in again]), strict=True):
            counts[i] = min(n, max_tokens)
    return counts


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at the last space when there is one (no word is split)."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit + 1)
    return text[: space if space > 0 else limit]


def check_kind(kind: str) -> None:
    if kind not in TEXT_KINDS:
        raise ValueError(f"unknown text kind {kind!r}: use one of {', '.join(TEXT_KINDS)}")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
