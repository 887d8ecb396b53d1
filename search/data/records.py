"""The records every loader returns: `Document`, `Dataset` (a corpus with queries and graded qrels per split), the
`DatasetError` they raise, and the corpus fingerprint that cache keys and index checks compare."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """Bad or missing data; the message names the file, line or id at fault."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    def full_text(self) -> str:
        """The text the encoders see: title and body joined by a space (the BEIR/MTEB convention)."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Dataset:
    """A corpus, optionally with queries and graded relevance judgements per split."""

    name: str
    corpus: tuple[Document, ...]
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    path: Path | None = None

    def split_queries(self, split: str) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
        """Query ids (numeric ids in numeric order, then the others sorted), texts and qrels of the queries judged in
        `split`."""
        if split not in self.qrels:
            available = ", ".join(sorted(self.qrels)) or "none"
            raise DatasetError(f"dataset {self.name!r} has no qrels for split {split!r}; available: {available}")
        judged = self.qrels[split]
        missing = [qid for qid in judged if qid not in self.queries]
        if missing:
            raise DatasetError(f"qrels/{split}.tsv names queries missing from queries.jsonl: {missing[:5]}")
        ids = sorted(judged, key=_natural_key)
        return ids, [self.queries[q] for q in ids], judged


def _natural_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


def corpus_fingerprint(corpus: Sequence[Document]) -> str:
    """A content hash of the corpus (ids, titles, texts, in order), for cache keys and index checks."""
    digest = hashlib.sha256()
    for doc in corpus:
        digest.update(f"{doc.id}\0{doc.title}\0{doc.text}\n".encode())
    return digest.hexdigest()
