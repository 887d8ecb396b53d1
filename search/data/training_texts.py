"""Training texts for distillation, gathered from a dataset without ever touching its evaluation queries.

The texts are corpus sentences, windows of consecutive sentences, and the queries judged in the `train` split. Queries
of every other split (`test`, `dev`, ...) are held out: they are never added, any corpus-derived text identical to one
of them (up to case, spacing and a final full stop) is dropped, and `check_no_test_queries` verifies the result.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Sequence

from search.data.records import Dataset, Document

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "train"
MIN_SENTENCE_CHARS = 25
MIN_SENTENCE_WORDS = 4
WINDOW_SIZES = (2, 3)
# a sentence ends at . ! or ? followed by spaces and an upper-case letter, digit or opening bracket; the look-behind
# keeps common abbreviations ("e.g. The", "et al. In", "vs. A", "Fig. 2") and decimals from ending a sentence
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bal\.)(?<!\bvs\.)(?<!\b[Ff]ig\.)(?<!\bNo\.)(?<!\bDr\.)\s+(?=[A-Z0-9(\[])"
)
_SPACES = re.compile(r"\s+")


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences with a simple regex (good enough for abstracts); keep whitespace tidy."""
    return [s for s in (_SPACES.sub(" ", part).strip() for part in _SENTENCE_END.split(text)) if s]


def is_substantial(sentence: str) -> bool:
    """Whether a sentence fragment is long enough to be a useful training text."""
    return len(sentence) >= MIN_SENTENCE_CHARS and len(sentence.split()) >= MIN_SENTENCE_WORDS


def document_texts(doc: Document, window_sizes: Sequence[int] = WINDOW_SIZES) -> list[str]:
    """The title (when substantial), each substantial sentence, and each window of consecutive sentences."""
    sentences = [s for s in split_sentences(doc.text) if is_substantial(s)]
    texts = [doc.title] if doc.title and is_substantial(doc.title) else []
    texts += sentences
    for size in window_sizes:
        texts += [" ".join(sentences[i : i + size]) for i in range(len(sentences) - size + 1)]
    return texts


def normalise_text(text: str) -> str:
    """The form two texts are compared in for leakage checks: case-folded, single-spaced, no final full stop."""
    return _SPACES.sub(" ", text).strip().casefold().rstrip(".").strip()


def held_out_query_texts(dataset: Dataset, splits: Iterable[str] | None = None) -> set[str]:
    """Normalised texts of the queries judged in `splits` (default: every split except `train`)."""
    chosen = [s for s in dataset.qrels if s != TRAIN_SPLIT] if splits is None else list(splits)
    return {
        normalise_text(dataset.queries[qid])
        for split in chosen
        for qid in dataset.qrels.get(split, {})
        if qid in dataset.queries
    }


def train_query_texts(dataset: Dataset) -> list[str]:
    """Texts of the queries judged in the `train` split (none when the dataset has no train qrels)."""
    judged = dataset.qrels.get(TRAIN_SPLIT, {})
    return [dataset.queries[qid] for qid in sorted(judged) if qid in dataset.queries]


def check_no_test_queries(texts: Iterable[str], dataset: Dataset, splits: Iterable[str] | None = None) -> None:
    """Raise ValueError if any text equals (see `normalise_text`) a query of a held-out split (default: all but
    `train`)."""
    held_out = held_out_query_texts(dataset, splits)
    leaked = [text for text in texts if normalise_text(text) in held_out]
    if leaked:
        raise ValueError(
            f"{len(leaked)} training texts are held-out (test) queries of {dataset.name!r}, e.g. {leaked[0]!r}: "
            "train on corpus text and train queries only"
        )


def training_texts(
    dataset: Dataset, max_texts: int | None = None, seed: int = 0, include_passages: bool = False
) -> list[str]:
    """Deduplicated, seed-shuffled distillation texts from `dataset`, at most `max_texts` of them.

    Sources: corpus titles, sentences and 2-3 sentence windows; the train-split queries; with `include_passages`,
    also whole documents as the search encodes them (title + text). Never a query of another split.
    """
    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be >= 1 or None, got {max_texts}")
    held_out = held_out_query_texts(dataset)
    candidates: list[str] = []
    for doc in dataset.corpus:
        candidates += document_texts(doc)
        if include_passages:
            candidates.append(doc.full_text())
    queries = train_query_texts(dataset)
    if not queries:
        logger.info("dataset %r has no %s qrels: training on corpus text only", dataset.name, TRAIN_SPLIT)
    candidates += queries
    seen: set[str] = set()
    texts: list[str] = []
    dropped = 0
    for text in candidates:
        text = _SPACES.sub(" ", text).strip()
        if not text or text in seen:
            continue
        seen.add(text)
        if normalise_text(text) in held_out:
            dropped += 1
            continue
        texts.append(text)
    if dropped:
        logger.info("dropped %d texts identical to held-out queries", dropped)
    random.Random(seed).shuffle(texts)
    texts = texts[:max_texts] if max_texts is not None else texts
    check_no_test_queries(texts, dataset)
    logger.info("%d distillation texts from %s (%d train queries available)", len(texts), dataset.name, len(queries))
    return texts
