"""The document store of an index directory: id, title and snippet per position, in an embedded SQLite database.

Nothing of it is held in Python objects: a search reads its hits' rows (`records`), an id lookup uses the table's
unique index (`positions`), so the RAM a store costs is SQLite's page cache (bounded: `CACHE_KIB`), whatever N is.

The file is written once, into a temporary name that the caller renames into place (inside a staged index directory),
in one transaction; it is then switched to WAL journaling (recorded in the file) so that later writers and readers do
not block each other. A reader opens it read-only. A crash at any step of a write leaves no file under the final
name; the crash points (`DOC_STORE_STEPS`, `semsearch_common.atomic.CRASH_ENV`) let tests show it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np

from indexes.filters import MetadataError, MetadataFilter, metadata_json
from semsearch_common.atomic import crash_point

DOCS_DB = "docs.sqlite"
SNIPPET_CHARS = 300  # characters of a document's text a hit shows
SCHEMA_VERSION = 2  # 2: metadata and version per document, and the tables of writes (`indexes.livestore`)
DOC_COLUMNS = {1: ["pos", "id", "title", "snippet"], 2: ["pos", "id", "title", "snippet", "meta", "version"]}
# The metadata index: one row per (document, key), its value typed by `kind` (n: number, s: string, b: boolean as
# 1/0), so a filter is an index lookup per condition (`MetadataFilter.indexed`), not a scan of every document's JSON.
META_TABLES = (
    "CREATE TABLE IF NOT EXISTS doc_meta (pos INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, value)",
    "CREATE INDEX IF NOT EXISTS doc_meta_lookup ON doc_meta (key, kind, value, pos)",
    "CREATE INDEX IF NOT EXISTS doc_meta_pos ON doc_meta (pos)",
)
# doc_meta rows of the documents selected by `{where}`, from their stored JSON
INDEX_META = (
    "INSERT INTO doc_meta SELECT d.pos, j.key, CASE j.type WHEN 'text' THEN 's' WHEN 'true' THEN 'b' "
    "WHEN 'false' THEN 'b' ELSE 'n' END, CASE j.type WHEN 'true' THEN 1 WHEN 'false' THEN 0 ELSE j.value END "
    "FROM docs d, json_each(d.meta) j WHERE d.meta IS NOT NULL {where}"
)
# every table of schema 2 but docs: what `indexes.livestore` writes (a built store holds them empty)
WRITE_TABLES = (
    "CREATE TABLE IF NOT EXISTS tombstones (seq INTEGER PRIMARY KEY AUTOINCREMENT, pos INTEGER NOT NULL UNIQUE, "
    "id TEXT NOT NULL, version INTEGER NOT NULL, kind TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vectors (pos INTEGER PRIMARY KEY, vector BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, version INTEGER NOT NULL UNIQUE, title TEXT NOT NULL, "
    "text TEXT NOT NULL, meta TEXT)",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    *META_TABLES,
)
CACHE_KIB = 2048  # SQLite's page cache per connection (its default), the store's whole RAM cost
INSERT_CHUNK = 10_000
LOOKUP_CHUNK = 900  # host parameters per IN (...) (SQLite's limit is 999 on old builds, 32766 on new)
DOC_STORE_STEPS = ("docs_created", "docs_rows", "docs_committed", "docs_closed")
_LOOKUP = "SELECT pos, id, title, snippet FROM docs WHERE pos IN ({marks})"


class DocStoreError(ValueError):
    """A document store that is missing, unreadable, of another schema, or inconsistent."""


@dataclass(frozen=True)
class DisplayDoc:
    """What a search hit shows besides its id."""

    title: str
    snippet: str
    metadata: Mapping[str, Any] | None = None  # flat, checked (`indexes.filters.check_metadata`)


class DocRecord(NamedTuple):
    """One stored document: its id and what a hit shows (a tuple: built per hit, where a dataclass costs more)."""

    id: str
    title: str
    snippet: str


def write_doc_store(path: Path | str, ids: Iterable[str], docs: Iterable[DisplayDoc]) -> int:
    """Write a new store at `path` (which must not exist) holding `ids[i]` with `docs[i]` at position i; return the
    count. Raises ValueError on a duplicate id or when the two sequences differ in length."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        raise ValueError(f"{path} already exists; the document store is written once, to a new file")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")  # one transaction into a new file that is renamed into place
        connection.execute("BEGIN")
        connection.execute(
            "CREATE TABLE docs (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, "
            "snippet TEXT NOT NULL, meta TEXT, version INTEGER NOT NULL DEFAULT 0)"
        )
        for statement in WRITE_TABLES:
            connection.execute(statement)
        crash_point("docs_created")
        count = 0
        rows = _rows(ids, docs)
        while chunk := list(islice(rows, INSERT_CHUNK)):
            try:
                connection.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, 0)", chunk)
            except sqlite3.IntegrityError as err:
                raise ValueError(f"duplicate document id among positions {chunk[0][0]}..{chunk[-1][0]}") from err
            count += len(chunk)
            crash_point("docs_rows")
        connection.execute(INDEX_META.format(where=""))
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
        crash_point("docs_committed")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    crash_point("docs_closed")
    return count


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL reader keeps SQLite's shared-memory index beside the file (`-shm`, `-wal`);
    where the folder cannot be written (a read-only mount) the file is opened as immutable instead."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
        connection.close()
        connection = sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False, isolation_level=None)
    connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return connection


def _rows(ids: Iterable[str], docs: Iterable[DisplayDoc]) -> Iterator[tuple[int, str, str, str, str | None]]:
    for pos, (doc_id, doc) in enumerate(zip(ids, docs, strict=True)):
        if not isinstance(doc_id, str):
            raise ValueError(f"document id at position {pos} is {type(doc_id).__name__}, not a string")
        yield pos, doc_id, doc.title, doc.snippet, metadata_json(doc.metadata)


class DocStore:
    """A read-only document store: `records(positions)`, `ids(positions)`, `positions(ids)`, `len()`.

    One connection, shared by every thread under a lock (each lookup is one short statement)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, count: int, schema: int = SCHEMA_VERSION) -> None:
        self.path = path
        self._connection = connection
        self._count = count
        self._lock = threading.RLock()
        self.schema = schema
        self.meta_indexed = (
            schema >= 2
            and connection.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'doc_meta'"
            ).fetchone()[0]
            == 1
        )  # else filters scan the JSON of every document

    @classmethod
    def open(cls, path: Path | str) -> DocStore:
        """Open the store at `path` read-only after checking its schema; raise DocStoreError naming the problem."""
        path = Path(path)
        if not path.is_file():
            raise DocStoreError(f"{path} is missing (the document store)")
        try:
            connection = _connect_read_only(path)
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            columns = [row[1] for row in connection.execute("PRAGMA table_info(docs)")]
            count = connection.execute("SELECT COUNT(*) FROM docs").fetchone()[0] if columns else 0
        except sqlite3.DatabaseError as err:
            raise DocStoreError(f"{path} is not a readable document store ({err})") from err
        if DOC_COLUMNS.get(version) != columns:
            connection.close()
            raise DocStoreError(
                f"{path}: schema version {version} with columns {columns}, expected version {SCHEMA_VERSION} with "
                f"{', '.join(DOC_COLUMNS[SCHEMA_VERSION])} (or version 1 with {', '.join(DOC_COLUMNS[1])})"
            )
        return cls(path, connection, int(count), version)

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def records(self, positions: Sequence[int], missing_ok: bool = False) -> dict[int, DocRecord]:
        """The records at `positions` (negative ones skipped), keyed by position; raise KeyError for a position the
        store does not hold (unless `missing_ok`: it is left out)."""
        wanted = sorted({int(p) for p in positions if p >= 0})  # numpy integers cannot be bound
        found: dict[int, DocRecord] = {}
        with self._lock:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                rows = self._connection.execute(_LOOKUP.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
                found.update((row[0], DocRecord(*row[1:])) for row in rows)
        if len(found) != len(wanted) and not missing_ok:
            missing = [p for p in wanted if p not in found]
            raise KeyError(f"positions not in the document store {self.path}: {missing[:5]}")
        return found

    def matching(self, where: MetadataFilter) -> np.ndarray:
        """Sorted positions of the documents whose metadata passes `where` (int64)."""
        if self.schema < 2:
            raise MetadataError(f"{self.path} keeps no metadata (an index built before metadata existed): rebuild it "
                                "with `semsearch index` to filter")  # fmt: skip
        if self.meta_indexed:
            sql, params = where.indexed()
        else:
            clause, params = where.where()
            sql = f"SELECT pos FROM docs WHERE {clause} ORDER BY pos"
        with self._lock:
            rows = self._connection.execute(sql, params).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def ids(self, positions: np.ndarray) -> list[list[str]]:
        """Rows of int64 positions (-1 for missing) -> rows of string ids (missing dropped)."""
        rows = np.atleast_2d(positions).tolist()
        found = self.records([p for row in rows for p in row])
        return [[found[p].id for p in row if p >= 0] for row in rows]

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """The positions of `ids`; KeyError naming the unknown ones."""
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        with self._lock:
            for start in range(0, len(unique), LOOKUP_CHUNK):
                chunk = unique[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    (doc_id, pos)
                    for doc_id, pos in self._connection.execute(
                        f"SELECT id, pos FROM docs WHERE id IN ({marks})", chunk
                    )
                )
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise KeyError(f"unknown document ids: {unknown[:5]}")
        return np.array([found[i] for i in ids], dtype=np.int64)

    @property
    def version(self) -> int:
        """The last write version logged (0 for a store never written to)."""
        with self._lock:
            return self._state("version")

    @property
    def next_pos(self) -> int:
        with self._lock:
            return self._state("next_pos")

    def vectors_from(self, start: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions >= `start` whose vectors the store holds, and those vectors (float32), in position order (none
        in a schema 1 store, which never took writes)."""
        if self.schema < 2:
            return np.empty(0, dtype=np.int64), np.empty((0, dim), dtype=np.float32)
        with self._lock:
            rows = self._connection.execute(
                "SELECT pos, vector FROM vectors WHERE pos >= ? ORDER BY pos", (start,)
            ).fetchall()
        positions = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return positions, vectors

    def tombstones_after(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(seq, pos) of the tombstones numbered above `seq`, in order (none in a schema 1 store)."""
        if self.schema < 2:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        with self._lock:
            rows = self._connection.execute(
                "SELECT seq, pos FROM tombstones WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        array = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return array[:, 0], array[:, 1]

    def last_tombstone(self) -> int:
        if self.schema < 2:
            return 0
        with self._lock:
            return int(self._connection.execute("SELECT COALESCE(MAX(seq), 0) FROM tombstones").fetchone()[0])

    def live_positions(self) -> np.ndarray:
        """Sorted positions of the live documents (int64)."""
        with self._lock:
            rows = self._connection.execute("SELECT pos FROM docs ORDER BY pos").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The document `doc_id` as stored (state "live"), or its pending upsert (state "encoding"), or None."""
        with self._lock:
            pending = None
            if self.schema >= 2:
                pending = self._connection.execute(
                    "SELECT title, text, meta, version FROM pending WHERE id = ?", (doc_id,)
                ).fetchone()
            columns = "title, snippet, meta, version, pos" if self.schema >= 2 else "title, snippet, NULL, 0, pos"
            live = self._connection.execute(f"SELECT {columns} FROM docs WHERE id = ?", (doc_id,)).fetchone()
        doc = None
        if live is not None:
            doc = {"id": doc_id, "title": live[0], "snippet": live[1],
                   "metadata": json.loads(live[2]) if live[2] else {}, "version": live[3], "state": "live"}  # fmt: skip
        if pending is not None:
            doc = {"id": doc_id, "title": pending[0], "snippet": pending[1][:SNIPPET_CHARS],
                   "metadata": json.loads(pending[2]) if pending[2] else {}, "version": pending[3],
                   "state": "encoding", "replaces_version": None if live is None else live[3]}  # fmt: skip
        return doc

    def counts(self) -> dict[str, int]:
        if self.schema < 2:
            return {"documents": self._count, "pending": 0, "tombstones": 0, "next_pos": self._count, "version": 0}
        with self._lock:
            one = lambda sql: int(self._connection.execute(sql).fetchone()[0])  # noqa: E731
            return {
                "documents": one("SELECT COUNT(*) FROM docs"),
                "pending": one("SELECT COUNT(*) FROM pending"),
                "tombstones": one("SELECT COUNT(*) FROM tombstones"),
                "next_pos": self._state("next_pos"),
                "version": self._state("version"),
            }

    def _state(self, key: str) -> int:
        """A counter of the writes (`next_pos`, `version`); a store never written to has the built values."""
        row = None
        if self.schema >= 2:
            row = self._connection.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return int(row[0])
        return {"next_pos": self._count, "version": 0}[key]

    @property
    def written(self) -> bool:
        """Whether the store has taken writes (its counters exist), so an index must replay it."""
        with self._lock:
            return self.schema >= 2 and self._connection.execute("SELECT COUNT(*) FROM state").fetchone()[0] > 0
