"""The records every loader returns: `Document`, `Dataset` (a corpus with queries and graded qrels per split), the
`DatasetError` they raise, `BadRecords` (what a loader does with a bad record: fail, or skip and count), and the corpus
fingerprint that cache keys and index checks compare."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

BadRecordPolicy = Literal["fail", "skip"]
BAD_RECORD_POLICIES: tuple[BadRecordPolicy, ...] = ("fail", "skip")
LOGGED_SKIPS = 10  # skipped records logged one by one; the rest are counted in one line
SKIP_HINT = "fix the record, or leave bad records out with `semsearch index --on-bad-record skip`"
INVISIBLE_CATEGORIES = ("Cc", "Cf", "Zs", "Zl", "Zp")  # controls, format (zero-width, BOM, bidi marks) and spaces


class DatasetError(ValueError):
    """Bad or missing data; the message names the file, line or id at fault."""


@functools.cache
def visible_pattern() -> str:
    """A regular expression that finds a visible character: the complement of `is_blank`'s characters, for schemas
    (OpenAPI `pattern`), so schema-driven clients know a blank text is refused. Built once from the Unicode tables."""
    invisible = [
        c for c in range(sys.maxunicode + 1) if chr(c).isspace() or unicodedata.category(chr(c)) in INVISIBLE_CATEGORIES
    ]
    ranges: list[tuple[int, int]] = []
    for code in invisible:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    escape = lambda code: re.escape(chr(code))  # noqa: E731
    body = "".join(escape(a) if a == b else f"{escape(a)}-{escape(b)}" for a, b in ranges)
    return f"[^{body}]"


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: only whitespace, zero-width and other invisible characters (Unicode Cc, Cf, Z*).

    Such a text would embed as noise, so the loaders count it as empty."""
    return all(char.isspace() or unicodedata.category(char) in INVISIBLE_CATEGORIES for char in text)


class BadRecords:
    """What the loaders do with a bad record (malformed line, wrong field type, empty text, duplicate id, undecodable
    bytes): with policy "fail" raise `DatasetError` naming the file and line; with "skip" leave it out, log a warning
    (the first `LOGGED_SKIPS`, then a count per file) and count it in `skipped`."""

    def __init__(self, policy: str = "fail") -> None:
        if policy not in BAD_RECORD_POLICIES:
            raise ValueError(f"unknown bad-record policy {policy!r}: use one of {', '.join(BAD_RECORD_POLICIES)}")
        self.policy = policy
        self.skipped = 0
        self._per_source: dict[str, int] = {}

    def report(self, where: str, problem: str, source: Path | str | None = None) -> None:
        """A bad record at `where` (`FILE:LINE`): raise, or skip it. `source` groups the count (default: the file)."""
        if self.policy == "fail":
            raise DatasetError(f"{where}: {problem}; {SKIP_HINT}")
        self.skipped += 1
        key = str(source) if source is not None else where.rsplit(":", 1)[0]
        self._per_source[key] = self._per_source.get(key, 0) + 1
        if self.skipped <= LOGGED_SKIPS:
            logger.warning("skipped a bad record: %s: %s", where, problem)

    def finish(self) -> None:
        """Log how many records were skipped per file beyond the ones already logged."""
        if self.skipped > LOGGED_SKIPS:
            counts = ", ".join(f"{count} in {source}" for source, count in self._per_source.items())
            logger.warning("skipped %d bad records in all (%s); the first %d are listed above", self.skipped, counts,
                           LOGGED_SKIPS)  # fmt: skip


def fail_on_bad_records(bad: BadRecords | None) -> BadRecords:
    return bad if bad is not None else BadRecords("fail")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    # flat metadata (`indexes.filters`), kept in the index's document store for filters; not part of the fingerprint
    metadata: Mapping[str, str | int | float | bool] | None = field(default=None, compare=False, hash=False)

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
    skipped_records: int = 0  # bad records left out while loading (corpus, queries and qrels), with on_bad_record skip

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
