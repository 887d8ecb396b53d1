"""Teacher targets: the teacher's unit vectors of the training texts, cached and resumable (`common.array_cache`).

An entry is `cache_root()/distill-targets/<key>.npy` + `<key>.json`, keyed by the teacher's identity (not its
location), the texts and the truncation: the same key as before the cache moved to `RowCache`, so old entries stay
valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from common.array_cache import RowCache
from common.cache import cache_key, cache_root, location_free
from compression.encoders import l2_normalise

TARGETS_DIR = "distill-targets"
TARGETS_CHUNK = 512


class TeacherEncoder(Protocol):
    """What `compute_teacher_targets` needs of a teacher: an `Encoder` satisfies it."""

    def encode(
        self, texts: Sequence[str], kind: Literal["query", "passage"] = ..., batch_size: int = ...
    ) -> np.ndarray:
        """Unit vectors, one row per text."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies the vector space (cache key)."""
        ...


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A content hash of a list of texts, in order (length-prefixed, so no two lists collide by concatenation)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def targets_cache_key(identity: dict[str, Any], texts_hash: str, max_seq_length: int) -> str:
    """Hash of the teacher identity (without its location), the texts and the truncation."""
    payload = {
        "teacher": location_free(identity),
        "texts": texts_hash,
        "max_seq_length": max_seq_length,
        "kind": "passage",
    }
    return cache_key(payload, length=32)


@contextmanager
def truncated(teacher: Any, max_seq_length: int) -> Iterator[None]:
    """Temporarily truncate an encoder that wraps a sentence-transformers model (`SentenceTransformerEncoder` keeps
    it in `_model`) to at most `max_seq_length` tokens, so teacher and student see the same text; other encoders
    (the fake one) have no truncation to set."""
    model = getattr(teacher, "_model", None)
    previous = getattr(model, "max_seq_length", None)
    if model is None or previous is None:
        yield
        return
    model.max_seq_length = min(int(previous), max_seq_length)
    try:
        yield
    finally:
        model.max_seq_length = previous


def compute_teacher_targets(
    teacher: TeacherEncoder,
    texts: Sequence[str],
    max_seq_length: int,
    batch_size: int = 32,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
) -> tuple[np.ndarray, bool]:
    """Return (the teacher's unit vectors for `texts` as passages, whether they came from the cache).

    Cached under `cache_root()/distill-targets/<key>.npy`, keyed by the teacher identity, the texts and
    `max_seq_length`. Encoding runs in chunks with a checkpoint every minute, so an interrupted run resumes.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to compute teacher targets for")
    identity = teacher.identity()
    key = targets_cache_key(identity, texts_fingerprint(texts), max_seq_length)
    cache = RowCache((cache_dir or cache_root()) / TARGETS_DIR, use_cache=use_cache)

    def encode_rows(indices: Sequence[int]) -> np.ndarray:
        chunk = [texts[i] for i in indices]
        return l2_normalise(teacher.encode(chunk, kind="passage", batch_size=batch_size))

    with truncated(teacher, max_seq_length):
        rows = cache.compute(
            key,
            len(texts),
            encode_rows,
            chunk_size=TARGETS_CHUNK,
            meta={"max_seq_length": max_seq_length, "teacher": identity},
            label="teacher targets",
            unit="texts",
            show_progress=show_progress,
        )
    return rows.vectors, rows.from_cache
