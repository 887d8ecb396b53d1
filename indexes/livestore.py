"""The document store opened for writes: the source of truth of a living index.

Every write is one SQLite transaction (WAL, `synchronous=FULL`), committed before anything else changes, so an
acknowledged write survives a kill at any later moment:

- an upsert is logged as *pending* (`pending`: its id, text, metadata and version; a later upsert of the same id
  replaces it) until its document encoder has encoded it;
- `apply_encoded` then, in one transaction, gives it the next position, stores its vector (`vectors`), tombstones the
  position of the document it replaces (`tombstones`, numbered by `seq`) and moves it into `docs`;
- a delete drops the id's pending upsert and tombstones its live position, at once (no encoding to wait for).

Positions only grow (`next_pos`): a FAISS index built from the store adds every position in order and removes (or
hides) the tombstoned ones, so replaying the store from any point it saved (positions below P and tombstones up to
seq T already in the index) rebuilds exactly the state the store describes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexes.docstore import (
    CACHE_KIB,
    DOC_COLUMNS,
    INDEX_META,
    SCHEMA_VERSION,
    SNIPPET_CHARS,
    WRITE_TABLES,
    DocStore,
    DocStoreError,
)
from indexes.filters import Scalar, metadata_json
from semsearch_common.atomic import crash_point

LIVE_STEPS = ("pending_logged", "encoded_applied", "deleted")


@dataclass(frozen=True)
class NewDoc:
    """A document to upsert: id, title, text and (checked) metadata."""

    id: str
    title: str
    text: str
    metadata: dict[str, Scalar] | None = None

    def full_text(self) -> str:
        """What the encoders see (title and text joined, as for a built corpus)."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class PendingDoc:
    doc: NewDoc
    version: int


@dataclass(frozen=True)
class Applied:
    """An encoded upsert moved into the store: its id and version, its new position, and the position it replaced."""

    id: str
    version: int
    pos: int
    replaced: int | None


@dataclass(frozen=True)
class Deleted:
    id: str
    version: int | None  # None: the id was found nowhere, and nothing changed
    pos: int | None  # the live position tombstoned (None: the id had none)
    was_pending: bool  # an upsert still being encoded was dropped


class LiveStore(DocStore):
    """A document store opened read-write (see the module docstring). One connection, under the store's lock."""

    @classmethod
    def open(cls, path: Path | str) -> LiveStore:  # type: ignore[override]
        """Open the store for writes, upgrading a schema 1 store in one transaction; raise DocStoreError naming the
        problem."""
        path = Path(path)
        if not path.is_file():
            raise DocStoreError(f"{path} is missing (the document store)")
        try:
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            columns = [row[1] for row in connection.execute("PRAGMA table_info(docs)")]
            if DOC_COLUMNS.get(version) != columns:
                connection.close()
                raise DocStoreError(f"{path}: schema version {version} with columns {columns}; expected "
                                    f"{', '.join(DOC_COLUMNS[SCHEMA_VERSION])}")  # fmt: skip
            indexed = connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'doc_meta'").fetchone()[0]
            connection.execute("BEGIN IMMEDIATE")
            if version == 1:
                connection.execute("ALTER TABLE docs ADD COLUMN meta TEXT")
                connection.execute("ALTER TABLE docs ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
            for statement in WRITE_TABLES:
                connection.execute(statement)
            if not indexed:  # a store from before the metadata index: build it from the stored JSON
                connection.execute(INDEX_META.format(where=""))
            connection.execute(
                "INSERT OR IGNORE INTO state VALUES ('next_pos', (SELECT COALESCE(MAX(pos), -1) + 1 FROM docs))"
            )
            connection.execute("INSERT OR IGNORE INTO state VALUES ('version', 0)")
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.execute("COMMIT")
            count = connection.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        except sqlite3.DatabaseError as err:
            raise DocStoreError(f"{path} is not a writable document store ({err})") from err
        return cls(path, connection, int(count), SCHEMA_VERSION)

    def _set_state(self, key: str, value: int) -> None:
        self._connection.execute("UPDATE state SET value = ? WHERE key = ?", (value, key))

    def log_upserts(self, docs: Sequence[NewDoc], first_version: int | None = None) -> list[int]:
        """Log `docs` as pending upserts in one transaction (versions `first_version`, +1, ...; default: after the
        last); return their versions. Raises ValueError on a duplicate id in the batch or a version not above the
        last, and logs nothing."""
        seen: set[str] = set()
        duplicates = sorted({d.id for d in docs if d.id in seen or seen.add(d.id)})  # type: ignore[func-returns-value]
        if duplicates:
            raise ValueError(f"duplicate document ids in one batch: {duplicates[:5]}; send each id once")
        with self._lock, self._transaction():
            last = self._state("version")
            start = last + 1 if first_version is None else first_version
            if start <= last:
                raise ValueError(f"write version {start} is not above the store's last version {last}")
            rows = [(doc.id, start + i, doc.title, doc.text, metadata_json(doc.metadata)) for i, doc in enumerate(docs)]
            self._connection.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?)", rows)
            if docs:
                self._set_state("version", start + len(docs) - 1)
            crash_point("pending_logged")
        return [start + i for i in range(len(docs))]

    def delete(self, ids: Sequence[str], first_version: int | None = None) -> list[Deleted]:
        """Delete `ids` in one transaction: drop their pending upserts, tombstone their live positions. Each id
        found (live or pending) takes the next version; an id found nowhere changes nothing (version None)."""
        unique = list(dict.fromkeys(ids))
        out: list[Deleted] = []
        with self._lock, self._transaction():
            last = self._state("version")
            version = (last + 1 if first_version is None else first_version) - 1
            if version < last:
                raise ValueError(f"write version {version + 1} is not above the store's last version {last}")
            for doc_id in unique:
                row = self._connection.execute("SELECT pos FROM docs WHERE id = ?", (doc_id,)).fetchone()
                was_pending = self._connection.execute("DELETE FROM pending WHERE id = ?", (doc_id,)).rowcount > 0
                if row is None and not was_pending:
                    out.append(Deleted(doc_id, None, None, False))
                    continue
                version += 1
                if row is not None:
                    self._tombstone(row[0], doc_id, version, "delete")
                out.append(Deleted(doc_id, version, None if row is None else int(row[0]), was_pending))
            if version > last:
                self._set_state("version", version)
            crash_point("deleted")
        return out

    def _tombstone(self, pos: int, doc_id: str, version: int, kind: str) -> None:
        self._connection.execute(
            "INSERT INTO tombstones (pos, id, version, kind) VALUES (?, ?, ?, ?)", (pos, doc_id, version, kind)
        )
        self._connection.execute("DELETE FROM docs WHERE pos = ?", (pos,))
        self._connection.execute("DELETE FROM doc_meta WHERE pos = ?", (pos,))
        self._count -= 1

    def writes_after(self, version: int) -> list[tuple[str, int, NewDoc | str]]:
        """The writes above `version` this store still shows, in version order: ("upsert", version, doc) for
        pending upserts, ("delete", version, id) for deletes (for rolling another store forward)."""
        with self._lock:
            pending = self._connection.execute(
                "SELECT version, id, title, text, meta FROM pending WHERE version > ?", (version,)
            ).fetchall()
            deletes = self._connection.execute(
                "SELECT version, id FROM tombstones WHERE kind = 'delete' AND version > ?", (version,)
            ).fetchall()
        writes: list[tuple[str, int, NewDoc | str]] = [
            ("upsert", v, NewDoc(i, t, x, json.loads(m) if m else None)) for v, i, t, x, m in pending
        ]
        writes += [("delete", v, i) for v, i in deletes]
        return sorted(writes, key=lambda w: w[1])

    def applied_after(self, version: int) -> int:
        """Upserts above `version` already encoded into this store (a store left behind by a crash lacks only
        pending upserts and deletes; any of these means the two stores took different writes)."""
        with self._lock:
            return int(
                self._connection.execute("SELECT COUNT(*) FROM docs WHERE version > ?", (version,)).fetchone()[0]
            )

    def bump_version(self, version: int) -> None:
        """Raise the last logged version to `version` (writes that left nothing to roll forward)."""
        with self._lock, self._transaction():
            if version > self._state("version"):
                self._set_state("version", version)

    def pending(self, limit: int | None = None) -> list[PendingDoc]:
        """Pending upserts, oldest version first."""
        sql = "SELECT id, title, text, meta, version FROM pending ORDER BY version"
        with self._lock:
            rows = self._connection.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [PendingDoc(NewDoc(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None), int(r[4])) for r in rows]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def apply_encoded(self, encoded: Iterable[tuple[PendingDoc, np.ndarray]]) -> list[Applied]:
        """Move encoded upserts into the store, in one transaction; an upsert no longer pending at its version
        (replaced by a newer one, or deleted, meanwhile) is skipped. Returns what was applied, in position order."""
        applied: list[Applied] = []
        with self._lock, self._transaction():
            next_pos = self._state("next_pos")
            for item, vector in encoded:
                doc = item.doc
                still = self._connection.execute(
                    "DELETE FROM pending WHERE id = ? AND version = ?", (doc.id, item.version)
                ).rowcount
                if not still:
                    continue
                row = self._connection.execute("SELECT pos FROM docs WHERE id = ?", (doc.id,)).fetchone()
                if row is not None:
                    self._tombstone(row[0], doc.id, item.version, "replace")
                self._connection.execute(
                    "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)",
                    (next_pos, doc.id, doc.title, doc.text[:SNIPPET_CHARS], metadata_json(doc.metadata),
                     item.version),
                )  # fmt: skip
                self._connection.execute(
                    "INSERT INTO vectors VALUES (?, ?)", (next_pos, np.asarray(vector, dtype=np.float32).tobytes())
                )
                if doc.metadata:
                    self._connection.execute(INDEX_META.format(where="AND d.pos = ?"), (next_pos,))
                self._count += 1
                applied.append(Applied(doc.id, item.version, next_pos, None if row is None else int(row[0])))
                next_pos += 1
            self._set_state("next_pos", next_pos)
            crash_point("encoded_applied")
        return applied

    def drop_vectors_below(self, pos: int) -> None:
        """Forget stored vectors below `pos` (a saved snapshot holds them)."""
        with self._lock, self._transaction():
            self._connection.execute("DELETE FROM vectors WHERE pos < ?", (pos,))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back (and the live count re-read) on any error; the caller holds the
        store's lock."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            self._count = int(self._connection.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
            raise
        self._connection.execute("COMMIT")
