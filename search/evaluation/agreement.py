"""How well a query encoder agrees with the teacher on texts that are not test queries, and how fast it encodes.

The main job picks its student with these figures, so they never touch a test query: the texts are a held-out slice
of the training texts (corpus sentences and windows, train queries), searched against the teacher's own document
vectors exactly, as the asymmetric pipeline searches them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from compression.encoders import Encoder, l2_normalise
from indexes.exact import exact_search
from semsearch_common.timing import WARMUP_CALLS, percentile_ms

QUERY_MAX_WORDS = 32  # SciFact train queries: median 12 words, 99% at most 26; MS MARCO-style ones fewer


def query_like(texts: Sequence[str], max_words: int = QUERY_MAX_WORDS) -> list[str]:
    """The texts short enough to stand in for queries (at most `max_words` words): a query is a sentence or a claim,
    not the 2-3 sentence windows a held-out slice of training texts also holds; all of them when fewer than 2 are."""
    short = [text for text in texts if len(text.split()) <= max_words]
    return short if len(short) >= 2 else list(texts)


@dataclass(frozen=True)
class Agreement:
    """A query encoder against the teacher on held-out texts: mean overlap of the exact top-k over the teacher's
    documents (recall@k vs teacher) and mean cosine to the teacher's vectors of the same texts."""

    recall_vs_teacher: float
    cosine: float
    texts: int
    k: int


def top_k_rows(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact top-k documents (inner product over unit vectors) for each query."""
    return exact_search(np.ascontiguousarray(queries, dtype=np.float32), documents, min(k, len(documents)))[1]


def agreement(
    vectors: np.ndarray, teacher_vectors: np.ndarray, teacher_documents: np.ndarray, k: int = 10,
    teacher_top: np.ndarray | None = None,
) -> Agreement:  # fmt: skip
    """Agreement of query `vectors` with the teacher's `teacher_vectors` of the same texts, both searched over
    `teacher_documents` (pass `teacher_top`, the teacher's top-k rows, to reuse it across encoders)."""
    if vectors.shape != teacher_vectors.shape:
        raise ValueError(f"student vectors {vectors.shape} and teacher vectors {teacher_vectors.shape} differ")
    if not len(vectors):
        raise ValueError("agreement needs at least one text")
    vectors, teacher_vectors = l2_normalise(vectors), l2_normalise(teacher_vectors)
    reference = top_k_rows(teacher_vectors, teacher_documents, k) if teacher_top is None else teacher_top
    found = top_k_rows(vectors, teacher_documents, k)
    width = reference.shape[1]
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / width for a, b in zip(found, reference, strict=True)])
    cosine = float(np.mean(np.sum(vectors * teacher_vectors, axis=1)))
    return Agreement(float(overlap), cosine, len(vectors), width)


def interleaved_encode_ms(encoders: Mapping[str, Encoder], texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Seconds of one single-text `encode` per text and encoder, the encoders taking turns on each text (so load on
    the machine hits them alike), after `WARMUP_CALLS` untimed calls each."""
    if not texts:
        raise ValueError("latency needs at least one text")
    for encoder in encoders.values():
        for text in texts[:WARMUP_CALLS]:
            encoder.encode([text])
    seconds = {name: np.empty(len(texts)) for name in encoders}
    for i, text in enumerate(texts):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.encode([text])
            seconds[name][i] = time.perf_counter() - started
    return seconds


def encode_p50_ms(encoders: Mapping[str, Encoder], texts: Sequence[str]) -> dict[str, float]:
    """Median single-text encode latency (ms) of each encoder, measured interleaved."""
    return {name: percentile_ms(samples, 50) for name, samples in interleaved_encode_ms(encoders, texts).items()}
