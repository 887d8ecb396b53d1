"""The write workload of the updates benchmark and the fault run, made deterministically from a corpus.

- replacements: existing ids whose text changes (sentences in reverse order, a marker appended);
- new documents: ids `new-N`, the first half of one document followed by the second half of another;
- deletes: ids already written (original or new), spread through the writes.

Every document written carries metadata ({"bucket": 0..99, "year": 2000..2024}). `final_corpus` applies the
operations in order and returns the documents a from-scratch rebuild would index, in the order the living index
holds them (originals never written in corpus order, then every written document in the order of its last write).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from search.data.records import Document


@dataclass(frozen=True)
class Put:
    docs: tuple[Document, ...]


@dataclass(frozen=True)
class Delete:
    ids: tuple[str, ...]


Op = Put | Delete


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in text.replace("? ", ". ").split(". ") if p.strip()]
    return parts or [text]


def make_workload(
    corpus: tuple[Document, ...], upserts: int, deletes: int, batch: int = 100, seed: int = 0, new_fraction: float = 0.5
) -> list[Op]:
    """`upserts` documents in PUT batches of `batch` (about `new_fraction` new ids, the rest replacing originals) and
    `deletes` deletes of ids already written, interleaved evenly."""
    rng = random.Random(seed)
    originals = list(corpus)
    n_new = round(upserts * new_fraction)
    replaced = rng.sample(originals, min(len(originals), upserts - n_new))
    docs: list[Document] = []
    for i, doc in enumerate(replaced):
        text = ". ".join(reversed(_sentences(doc.text))) + " (revised)"
        docs.append(Document(doc.id, doc.title, text, {"bucket": i % 100, "year": 2000 + i % 25}))
    for i in range(upserts - len(replaced)):
        a, b = rng.sample(originals, 2)
        text = a.text[: len(a.text) // 2] + " " + b.text[len(b.text) // 2 :]
        docs.append(Document(f"new-{i}", a.title, text, {"bucket": (i * 7) % 100, "year": 2000 + i % 25}))
    rng.shuffle(docs)
    batches = [docs[i : i + batch] for i in range(0, len(docs), batch)]
    ops: list[Op] = []
    written: list[str] = []
    per_batch = deletes / max(1, len(batches))
    owed = 0.0
    deleted: set[str] = set()
    for chunk in batches:
        ops.append(Put(tuple(chunk)))
        written += [d.id for d in chunk]
        owed += per_batch
        take = int(owed)
        owed -= take
        pool = [i for i in written if i not in deleted] + [d.id for d in originals[:2000] if d.id not in deleted]
        chosen = rng.sample(pool, min(take, len(pool)))
        deleted.update(chosen)
        if chosen:
            ops.append(Delete(tuple(chosen)))
    return ops


def final_corpus(corpus: tuple[Document, ...], ops: list[Op]) -> tuple[Document, ...]:
    """The documents after `ops`, in the living index's position order (see the module docstring)."""
    state: dict[str, Document] = {doc.id: doc for doc in corpus}
    order: dict[str, tuple[int, int]] = {doc.id: (0, i) for i, doc in enumerate(corpus)}
    tick = 0
    for op in ops:
        if isinstance(op, Put):
            for doc in op.docs:
                tick += 1
                state[doc.id] = doc
                order[doc.id] = (1, tick)
        else:
            for doc_id in op.ids:
                state.pop(doc_id, None)
                order.pop(doc_id, None)
    return tuple(sorted(state.values(), key=lambda d: order[d.id]))


def as_json(doc: Document) -> dict[str, Any]:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": dict(doc.metadata or {})}
