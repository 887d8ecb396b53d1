"""Encode a corpus once per (model, corpus, settings) and cache the vectors, resumably.

The caching itself (chunks, checkpoints, resume, damaged entries) is `semsearch_common.array_cache`; this module
decides what
identifies an entry (the encoder's files and settings, the corpus content, the text format; never a path) and
encodes longest documents first so padding stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders import Encoder
from search.data.datasets import Document, corpus_fingerprint
from semsearch_common.array_cache import CHECKPOINT_SECONDS, RowCache
from semsearch_common.cache import cache_key, cache_root, location_free

logger = logging.getLogger(__name__)

TEXT_FORMAT = "title+' '+text"
EMBEDDINGS_DIR = "embeddings"


@dataclass(frozen=True)
class CorpusEmbeddings:
    """Unit vectors for a corpus, in corpus order, with where they came from."""

    vectors: np.ndarray
    key: str
    from_cache: bool
    encode_seconds: float


def embedding_cache_key(identity: dict[str, Any], corpus_hash: str) -> str:
    """Hash of the encoder identity (model files and settings), the corpus content and the text format (documents
    are encoded as passages)."""
    payload = {
        "encoder": location_free(identity),
        "corpus": corpus_hash,
        "kind": "passage",
        "format": TEXT_FORMAT,
        "dtype": "float32",
    }
    return cache_key(payload)


def embeddings_cache(cache_dir: Path | None = None, use_cache: bool = True, **options: Any) -> RowCache:
    """The corpus-embedding entries of `semsearch_common.array_cache`, under `<cache_root>/embeddings` by default."""
    return RowCache((cache_dir or cache_root()) / EMBEDDINGS_DIR, use_cache=use_cache, **options)


def load_cached_embeddings(key: str, n: int, cache_dir: Path | None = None) -> CorpusEmbeddings | None:
    """Return cached vectors for `key` if a complete entry of `n` rows exists."""
    cached = embeddings_cache(cache_dir).load(key, n)
    if cached is None:
        return None
    return CorpusEmbeddings(cached.vectors, key, True, cached.seconds)


def encoding_order(texts: Sequence[str]) -> list[int]:
    """Longest texts first: batches of similar length pad less (every engine encodes in this order)."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


def encode_corpus(
    encoder: Encoder,
    corpus: tuple[Document, ...] | list[Document],
    batch_size: int = 32,
    chunk_size: int = 256,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> CorpusEmbeddings:
    """Encode every document as a passage, reusing or filling the cache."""
    key = embedding_cache_key(encoder.identity(), corpus_fingerprint(corpus))
    texts = [doc.full_text() for doc in corpus]
    order = encoding_order(texts)
    cache = embeddings_cache(cache_dir, use_cache, checkpoint_seconds=checkpoint_seconds)
    rows = cache.compute(
        key,
        len(texts),
        lambda chunk: encoder.encode([texts[i] for i in chunk], kind="passage", batch_size=batch_size),
        order=order,
        chunk_size=chunk_size,
        meta={"encoder": encoder.identity()},
        label=f"encoding with {encoder.name}",
        unit="docs",
        show_progress=show_progress,
    )
    return CorpusEmbeddings(rows.vectors, key, rows.from_cache, rows.seconds)
