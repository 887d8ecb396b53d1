"""Encode a corpus once per (model, corpus, settings) and cache the vectors, resumably.

The teacher needs ~51 minutes for SciFact on 2 cores, so encoding runs in length-sorted chunks with a
checkpoint every minute; an interrupted run resumes where it stopped, and a finished one is reused at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import save_array_atomic, write_json_atomic
from common.cache import cache_root
from common.progress import make_progress
from compression.encoders import Encoder
from search.data.datasets import Document, corpus_fingerprint

logger = logging.getLogger(__name__)

TEXT_FORMAT = "title+' '+text"
CHECKPOINT_SECONDS = 60.0


@dataclass(frozen=True)
class CorpusEmbeddings:
    """Unit vectors for a corpus, in corpus order, with where they came from."""

    vectors: np.ndarray
    key: str
    from_cache: bool
    encode_seconds: float

    @property
    def docs_per_second(self) -> float:
        return len(self.vectors) / self.encode_seconds if self.encode_seconds > 0 else float("inf")


def embedding_cache_key(identity: dict[str, Any], corpus_hash: str, kind: str = "passage") -> str:
    """Hash of the encoder identity (model files and settings), the corpus content and the text format."""
    location_free = {k: v for k, v in identity.items() if k != "path"}  # the same files anywhere hit the cache
    payload = {"encoder": location_free, "corpus": corpus_hash, "kind": kind, "format": TEXT_FORMAT, "dtype": "float32"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def embeddings_dir(cache_dir: Path | None = None) -> Path:
    path = (cache_dir or cache_root()) / "embeddings"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_cached_embeddings(key: str, cache_dir: Path | None = None) -> CorpusEmbeddings | None:
    """Return cached vectors for `key` if a complete entry exists."""
    folder = embeddings_dir(cache_dir)
    meta_path, vectors_path = folder / f"{key}.json", folder / f"{key}.npy"
    if not (meta_path.exists() and vectors_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        vectors = np.load(vectors_path, allow_pickle=False)
    except (OSError, ValueError, json.JSONDecodeError) as err:  # a damaged entry is re-encoded, never trusted
        logger.warning("cache entry %s is unreadable (%s); re-encoding", key, err)
        return None
    if vectors.shape != (meta["n"], meta["dim"]):
        logger.warning(
            "cache entry %s has shape %s, expected %s; ignoring it", key, vectors.shape, (meta["n"], meta["dim"])
        )
        return None
    return CorpusEmbeddings(vectors, key, True, float(meta["encode_seconds"]))


def encode_corpus(
    encoder: Encoder,
    corpus: tuple[Document, ...] | list[Document],
    batch_size: int = 32,
    chunk_size: int = 256,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
) -> CorpusEmbeddings:
    """Encode every document as a passage, reusing or filling the cache."""
    key = embedding_cache_key(encoder.identity(), corpus_fingerprint(corpus))
    if use_cache:
        cached = load_cached_embeddings(key, cache_dir)
        if cached is not None:
            logger.info("reusing cached corpus embeddings %s (%d x %d)", key, *cached.vectors.shape)
            return cached
    folder = embeddings_dir(cache_dir)
    checkpoint_path = folder / f"{key}.partial.npy"
    checkpoint_meta = folder / f"{key}.partial.json"
    texts = [doc.full_text() for doc in corpus]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: padding stays small
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    done, spent = 0, 0.0
    if use_cache and checkpoint_path.exists() and checkpoint_meta.exists():
        try:
            state = json.loads(checkpoint_meta.read_text())
            partial = np.load(checkpoint_path, allow_pickle=False)
        except (OSError, ValueError, json.JSONDecodeError) as err:
            logger.warning("ignoring an unreadable checkpoint for %s (%s)", key, err)
        else:
            if partial.shape == vectors.shape:
                vectors, done, spent = partial, int(state["done"]), float(state["seconds"])
                logger.info("resuming corpus encoding at %d/%d", done, len(texts))
    started = time.perf_counter() - spent
    last_checkpoint = time.perf_counter()
    with make_progress(show_progress) as progress:
        task = progress.add_task(f"encoding with {encoder.name}", total=len(texts), completed=done, info="")
        while done < len(texts):
            chunk = order[done : done + chunk_size]
            vectors[chunk] = encoder.encode([texts[i] for i in chunk], kind="passage", batch_size=batch_size)
            done += len(chunk)
            elapsed = time.perf_counter() - started
            progress.update(task, completed=done, info=f"{done / elapsed:.1f} docs/s")
            if use_cache and done < len(texts) and time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS:
                save_array_atomic(checkpoint_path, vectors)
                write_json_atomic(checkpoint_meta, {"done": done, "seconds": elapsed})
                last_checkpoint = time.perf_counter()
    seconds = time.perf_counter() - started
    result = CorpusEmbeddings(vectors, key, False, seconds)
    if use_cache:
        save_array_atomic(folder / f"{key}.npy", vectors)
        write_json_atomic(
            folder / f"{key}.json",
            {
                "n": len(texts),
                "dim": encoder.dim,
                "encode_seconds": seconds,
                "encoder": encoder.identity(),
                "docs_per_second": result.docs_per_second,
            },
        )
        checkpoint_path.unlink(missing_ok=True)
        checkpoint_meta.unlink(missing_ok=True)
    logger.info("encoded %d documents in %.1f s (%.1f docs/s)", len(texts), seconds, result.docs_per_second)
    return result
