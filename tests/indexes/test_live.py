"""The living index: upserts and deletes applied in place keep every index kind equal to exact search over the
documents the store holds (filtered or not), through compaction, reopening, read-only views, and a kill at every
crash point of a write or a compaction."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from indexes.docstore import DOCS_DB
from indexes.faiss_index import IndexSpec, apply_search_params, build_index, split_rescore_params
from indexes.filters import MetadataError, parse_filter
from indexes.live import COMPACTION_STEPS, WRITE_LOCK, LiveIndex, NotWritableError, check_writable
from indexes.livestore import LIVE_STEPS, LiveStore, NewDoc
from indexes.store import GENERATION_STEPS, DisplayDoc, IndexDirError, StoredIndex, load_index_dir, save_index_dir
from semsearch_common.threads import limit_threads

DIM = 16
N = 400
K = 10
ROOT = Path(__file__).resolve().parents[2]
_CENTRES = np.random.default_rng(1234).standard_normal((16, DIM)).astype(np.float32)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny indexes search in microseconds on one thread; OpenMP teams contending on a small machine cost seconds."""
    with limit_threads(1):
        yield


# --- the corpus: every vector and metadata a function of (id, title), so a child process can rebuild them --------


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "little")


@functools.cache
def _vector(doc_id: str, title: str) -> np.ndarray:
    """A clustered unit vector (shaped like real embeddings) for this version of the document."""
    rng = np.random.default_rng(_seed(doc_id, title))
    x = _CENTRES[rng.integers(len(_CENTRES))] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
    x = (x / np.linalg.norm(x)).astype(np.float32)
    x.flags.writeable = False
    return x


@functools.cache
def _bucket(doc_id: str, title: str) -> int:
    return _seed(doc_id, title, "bucket") % 100


def _metadata(doc_id: str, title: str) -> dict:
    return {"bucket": _bucket(doc_id, title), "title": title}


QUERIES = np.stack([_vector(f"q{i}", "query") for i in range(30)])


@dataclass
class Truth:
    """The documents that should be live: id -> title (its vector and metadata follow from both)."""

    docs: dict[str, str] = field(default_factory=lambda: {f"d{i}": "orig" for i in range(N)})

    def upsert(self, pairs: list[tuple[str, str]]) -> None:
        self.docs.update(pairs)

    def delete(self, ids: list[str]) -> None:
        for doc_id in ids:
            self.docs.pop(doc_id, None)

    def copy(self) -> Truth:
        return Truth(dict(self.docs))

    def matrix(self, spec: dict | None = None) -> tuple[list[str], np.ndarray]:
        """The live ids passing `spec` (a filter on `bucket`, evaluated in Python) and their vectors."""
        ids = sorted(i for i, t in self.docs.items() if spec is None or _passes(_metadata(i, t), spec))
        return ids, np.stack([_vector(i, self.docs[i]) for i in ids]) if ids else np.empty((0, DIM), np.float32)


def _passes(metadata: dict, spec: dict) -> bool:
    bucket = metadata["bucket"]
    tests = {"eq": bucket.__eq__, "lt": bucket.__lt__, "gte": bucket.__ge__}
    return all(tests[op](value) for op, value in spec["bucket"].items())


# the writes every kind takes: new ids, replacements of built and of written documents, deletes of built, replaced
# and written ones (and of an unknown id), re-creation of a deleted id
WRITES: list[tuple[str, list]] = [
    ("upsert", [(f"n{i}", "v1") for i in range(60)] + [(f"d{i}", "v1") for i in range(40)]),
    ("delete", [f"d{i}" for i in range(100, 150)] + ["n3", "d5", "nope"]),
    ("upsert", [("n10", "v2"), ("n3", "v2"), ("d200", "v2")]),
    ("delete", ["n20"]),
]
REMOVED = 40 + 52 + 2 + 1  # positions replaced or deleted by WRITES
ADDED = 60 + 40 + 3  # positions WRITES gives out


def _write(live: LiveIndex, kind: str, payload: list, truth: Truth | None = None) -> None:
    """One write through the store then the index, as `search.writes.CorpusWriter` does it."""
    store = live.store
    assert isinstance(store, LiveStore)
    if kind == "upsert":
        store.log_upserts([NewDoc(i, t, f"text of {i} {t}", _metadata(i, t)) for i, t in payload])
        pending = store.pending()
        vectors = {p.doc.id: _vector(p.doc.id, p.doc.title) for p in pending}
        live.apply(store.apply_encoded([(p, vectors[p.doc.id]) for p in pending]), vectors)
        if truth is not None:
            truth.upsert(payload)
    else:
        live.apply_deletes(store.delete(payload))
        if truth is not None:
            truth.delete(payload)


# --- index kinds ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    params: dict
    oversample: float | None = None  # rescore k x oversample candidates from full-precision rows
    min_recall: float = 1.0  # 1.0: the kind scores exactly (its top-k must equal exact search's)
    in_place: bool = False  # removes in place (no hidden positions)


KINDS = {
    "Flat": Kind({}),
    "HNSW16": Kind({"efSearch": 256}),
    "IVF8,Flat": Kind({"nprobe": 8}, in_place=True),
    "SQ8": Kind({}, oversample=4, min_recall=0.95),
    "PQ8x4fs": Kind({}, oversample=4, min_recall=0.85),
    "RaBitQfs": Kind({}, oversample=4, min_recall=0.85),
    "IVF8,RaBitQfs": Kind({"nprobe": 8}, oversample=4, min_recall=0.85, in_place=True),
}


def _build(path: Path, factory: str) -> None:
    ids = [f"d{i}" for i in range(N)]
    vectors = np.stack([_vector(i, "orig") for i in ids])
    spec = IndexSpec(factory, search_params=KINDS[factory].params, vectors="fp32")
    index = build_index(vectors, spec).index
    docs = [DisplayDoc("orig", f"text of {i} orig", _metadata(i, "orig")) for i in ids]
    encoder = {"name": "fake", "type": "fake", "dim": DIM, "fingerprint": f"fake-{DIM}"}
    meta = {"factory": factory, "encoder": encoder, "search_params": spec.resolved_search_params()}
    save_index_dir(path, index, ids, docs, meta, vectors=vectors, vector_dtype="fp32")


def _open(path: Path, writable: bool = True, **kwargs) -> LiveIndex:
    """Load the directory and open its living index with its search parameters, as `search.pipeline` does."""
    stored = load_index_dir(path)
    apply_search_params(stored.index, split_rescore_params(stored.meta["search_params"])[0])
    return LiveIndex.open(stored, writable=writable, **kwargs)


@pytest.fixture
def written(tmp_path):
    """`written(factory)`: (directory, living index open for writes after WRITES, the truth)."""
    opened: list[LiveIndex] = []

    def make(factory: str) -> tuple[Path, LiveIndex, Truth]:
        path = tmp_path / factory.replace(",", "_")
        _build(path, factory)
        live = _open(path)
        opened.append(live)
        truth = Truth()
        for kind, payload in WRITES:
            _write(live, kind, payload, truth)
        return path, live, truth

    yield make
    for live in opened:
        live.close()


def _search(live: LiveIndex, factory: str, spec: dict | None = None, k: int = K):
    """(ids per query, scores per query, outcome) of the living index."""
    where = parse_filter(spec) if spec is not None else None
    with live.reading():
        outcome = live.search(QUERIES, k, KINDS[factory].oversample, None, where)
    positions = outcome.timed.positions
    live_positions = set(live.store.live_positions().tolist())
    found = [p for p in positions.ravel().tolist() if p >= 0]
    assert set(found) <= live_positions, "a deleted or replaced position was returned"
    ids = live.store.ids(positions)
    scores = [row[row_pos >= 0].tolist() for row, row_pos in zip(outcome.timed.scores, positions, strict=True)]
    return ids, scores, outcome


def _check_against_exact(
    live: LiveIndex, factory: str, truth: Truth, spec: dict | None = None, k: int = K, assert_same_top_k=None
) -> None:
    """The living index's top-k (under `spec`) against exact search over the truth's live documents."""
    ids, matrix = truth.matrix(spec)
    got_ids, got_scores, outcome = _search(live, factory, spec, k)
    if spec is not None:
        assert outcome.matched == len(ids)
    if not ids:
        assert all(row == [] for row in got_ids), "a filter matching nothing returned hits"
        return
    row_of = {doc_id: row for row, doc_id in enumerate(ids)}
    exact = QUERIES @ matrix.T
    want = min(k, len(ids))
    assert all(len(row) == want for row in got_ids), f"expected {want} hits per query, got {list(map(len, got_ids))}"
    for q, row_ids in enumerate(got_ids):
        assert len(set(row_ids)) == len(row_ids), f"query {q}: an id returned twice"
        assert set(row_ids) <= set(ids), f"query {q}: returned ids the truth does not hold or the filter excludes"
    rows = np.array([[row_of[i] for i in row] for row in got_ids])
    # every kind here scores exactly or rescores its candidates from full-precision rows
    np.testing.assert_allclose(np.array(got_scores), np.take_along_axis(exact, rows, axis=1), atol=1e-4)
    if KINDS[factory].min_recall == 1.0:
        assert_same_top_k(rows, np.array(got_scores, dtype=np.float32), exact, eps=1e-4)
    else:
        top = np.argsort(-exact, axis=1)[:, :want]
        recall = np.mean([len({ids[j] for j in top[q]} & set(got_ids[q])) / want for q in range(len(QUERIES))])
        assert recall >= KINDS[factory].min_recall, f"recall@{k} {recall:.3f}"


def _index_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith(("index", "vectors")))


# --- writes, filters, compaction, reopening, per kind ----------------------------------------------------------


@pytest.mark.parametrize("factory", list(KINDS))
def test_writes_keep_search_equal_to_exact_search_over_the_final_corpus(written, factory, assert_same_top_k):
    path, live, truth = written(factory)
    assert len(truth.docs) == N + 60 - 52 + 1 - 1
    _check_against_exact(live, factory, truth, assert_same_top_k=assert_same_top_k)
    status = live.status()
    assert status["documents"] == len(live.store) == len(truth.docs)
    assert status["next_pos"] == N + ADDED and status["pending"] == 0
    assert status["removes_in_place"] is KINDS[factory].in_place
    if KINDS[factory].in_place:
        assert live.hidden == set() and status["index_ntotal"] == len(truth.docs)
        assert not live.needs_compaction()
    else:
        assert status["hidden"] == REMOVED and status["index_ntotal"] == N + ADDED
        assert live.needs_compaction()  # 95 hidden of 503
    for doc_id, title in [("d0", "v1"), ("n10", "v2"), ("n3", "v2"), ("d300", "orig")]:
        doc = live.store.get(doc_id)
        assert (doc["state"], doc["title"], doc["metadata"]) == ("live", title, _metadata(doc_id, title))
    assert live.store.get("d120") is None and live.store.get("n20") is None


@pytest.mark.parametrize("factory", list(KINDS))
@pytest.mark.parametrize("scan_max", [0, None], ids=["selector", "exact_scan"])
def test_filtered_search_equals_exact_filtered_search(written, factory, scan_max, assert_same_top_k):
    _, live, truth = written(factory)
    if scan_max is not None:
        live.scan_max = scan_max
    for spec in ({"bucket": {"eq": 0}}, {"bucket": {"lt": 10}}, {"bucket": {"lt": 50}}, {"bucket": {"gte": 100}}):
        counts = len(truth.matrix(spec)[0])
        assert spec["bucket"] == {"gte": 100} or counts > 0
        _check_against_exact(live, factory, truth, spec, assert_same_top_k=assert_same_top_k)
        _, _, outcome = _search(live, factory, spec)
        if counts and scan_max == 0:
            assert outcome.method in ("index+selector", "overfetch"), outcome.method
        elif counts:
            assert outcome.method == "exact_scan"
    # k larger than the matches: all of them, none invented
    _check_against_exact(live, factory, truth, {"bucket": {"lt": 3}}, k=50, assert_same_top_k=assert_same_top_k)


@pytest.mark.parametrize("factory", list(KINDS))
def test_compaction_drops_hidden_positions_keeps_results_and_sweeps_old_generations(
    written, factory, assert_same_top_k
):
    path, live, truth = written(factory)
    before = _search(live, factory)
    meta = live.compact()
    assert meta["live"] == {"generation": 1, "positions": N + ADDED, "tombstone_seq": live.store.last_tombstone()}
    assert live.hidden == set() and live.status()["generation"] == 1
    assert live.index.ntotal == len(truth.docs)
    assert _index_files(path) == ["index.g1.faiss", "vectors.g1.npy"]
    _check_against_exact(live, factory, truth, assert_same_top_k=assert_same_top_k)
    _check_against_exact(live, factory, truth, {"bucket": {"lt": 10}}, assert_same_top_k=assert_same_top_k)
    after = _search(live, factory)
    if KINDS[factory].min_recall == 1.0:
        assert [set(r) for r in after[0]] == [set(r) for r in before[0]]

    _write(live, "upsert", [("late0", "v3"), ("d300", "v3")], truth)  # writes after a compaction, then another
    _write(live, "delete", ["n30", "late0"], truth)
    _check_against_exact(live, factory, truth, assert_same_top_k=assert_same_top_k)
    assert live.compact()["live"]["generation"] == 2
    assert _index_files(path) == ["index.g2.faiss", "vectors.g2.npy"]
    _check_against_exact(live, factory, truth, assert_same_top_k=assert_same_top_k)
    live.close()
    reopened = _open(path)
    try:
        assert reopened.status()["generation"] == 2 and reopened.hidden == set()
        _check_against_exact(reopened, factory, truth, assert_same_top_k=assert_same_top_k)
        _check_against_exact(reopened, factory, truth, {"bucket": {"eq": 0}}, assert_same_top_k=assert_same_top_k)
    finally:
        reopened.close()


@pytest.mark.parametrize("factory", list(KINDS))
def test_reopening_replays_the_writes(written, factory, assert_same_top_k, assert_same_ranking):
    path, live, truth = written(factory)
    before = _search(live, factory)

    reader = _open(path, writable=False)  # another process's read-only view, while the writer holds the directory
    try:
        assert not reader.writable
        _check_against_exact(reader, factory, truth, assert_same_top_k=assert_same_top_k)
        with pytest.raises(NotWritableError, match="open read-only: compaction needs it open for writes"):
            reader.compact()
    finally:
        reader.close()
    with pytest.raises(NotWritableError, match="is open for writes by another process"):
        _open(path)

    live.close()
    reopened = _open(path)
    try:
        assert reopened.status()["hidden"] == (0 if KINDS[factory].in_place else REMOVED)
        _check_against_exact(reopened, factory, truth, assert_same_top_k=assert_same_top_k)
        again = _search(reopened, factory)
        for q in range(len(QUERIES)):
            assert_same_ranking(again[0][q], again[1][q], before[0][q], before[1][q], eps=1e-4)
    finally:
        reopened.close()


# --- refusals and store semantics ------------------------------------------------------------------------------


def test_only_one_writer_holds_a_directory(tmp_path):
    _build(tmp_path / "ix", "Flat")
    first = _open(tmp_path / "ix")
    with pytest.raises(NotWritableError, match="open for writes by another process"):
        _open(tmp_path / "ix")
    assert (tmp_path / "ix" / WRITE_LOCK).exists()
    first.close()
    _open(tmp_path / "ix").close()  # the lock goes with its holder


def test_a_directory_open_for_writes_is_not_rebuilt_under_its_writer(tmp_path):
    """`semsearch index --out DIR` (save_index_dir) while a server writes to DIR would swap the store from under
    it and lose its writes: refused, naming the writer; once the writer is gone, the rebuild goes ahead."""
    _build(tmp_path / "ix", "Flat")
    writer = _open(tmp_path / "ix")
    with pytest.raises(IndexDirError, match="is open for writes by another process"):
        _build(tmp_path / "ix", "Flat")
    assert writer.store.get("d1")["state"] == "live"  # untouched
    writer.close()
    _build(tmp_path / "ix", "HNSW16")
    assert load_index_dir(tmp_path / "ix").meta["factory"] == "HNSW16"


def test_indexes_that_cannot_take_writes_are_refused_naming_the_fix(tmp_path):
    _build(tmp_path / "ix", "Flat")
    mapped = load_index_dir(tmp_path / "ix", mmap=True)
    with pytest.raises(NotWritableError, match="memory-mapped .* without --mmap"):
        LiveIndex.open(mapped)
    mapped.docs.close()

    stored = load_index_dir(tmp_path / "ix")
    for meta, message in (
        ({**stored.meta, "factory": "SQ8,RFlat"}, "cannot remove vectors; rebuild it without ,RFlat"),
        ({**stored.meta, "on_disk_lists": True}, "inverted lists on disk"),
    ):
        with pytest.raises(NotWritableError, match=message):
            check_writable(StoredIndex(stored.index, stored.docs, meta, stored.path))
    check_writable(stored)
    stored.docs.close()

    vectors = np.stack([_vector(f"d{i}", "orig") for i in range(N)])
    index = build_index(vectors, IndexSpec("SQ8,RFlat")).index
    encoder = {"name": "fake", "type": "fake", "dim": DIM, "fingerprint": f"fake-{DIM}"}
    save_index_dir(tmp_path / "rflat", index, [f"d{i}" for i in range(N)], [DisplayDoc("t", "s")] * N,
                   {"factory": "SQ8,RFlat", "encoder": encoder, "search_params": {}})  # fmt: skip
    with pytest.raises(NotWritableError, match=r"SQ8,RFlat\) re-ranks from RAM with ,RFlat"):
        _open(tmp_path / "rflat")
    assert not (tmp_path / "rflat" / WRITE_LOCK).exists(), "a refused open takes no lock"


def test_a_filter_on_an_index_built_before_metadata_is_refused_with_a_message(tmp_path):
    """A schema 1 document store (no metadata, no tables of writes) read through a living index view, as a
    pipeline's filtered search does: the filter is refused with the store's message, not a SQLite error."""
    import sqlite3

    _build(tmp_path / "ix", "Flat")
    path = tmp_path / "ix" / DOCS_DB
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE docs (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, "
                       "snippet TEXT NOT NULL)")  # fmt: skip
    connection.executemany("INSERT INTO docs VALUES (?, ?, 't', 's')", [(i, f"d{i}") for i in range(N)])
    connection.execute("PRAGMA user_version=1")
    connection.commit()
    connection.close()
    stored = load_index_dir(tmp_path / "ix")
    assert stored.docs.schema == 1
    try:
        with pytest.raises(MetadataError, match="keeps no metadata"):
            view = LiveIndex.open(stored, writable=False)
            with view.reading():
                view.search(QUERIES, K, None, None, parse_filter({"bucket": 1}))
    finally:
        stored.docs.close()


def test_a_filter_matching_nothing_gives_no_hits(written):
    _, live, _ = written("HNSW16")
    for scan_max in (0, 2048):
        live.scan_max = scan_max
        with live.reading():
            outcome = live.search(QUERIES[:3], K, None, None, parse_filter({"bucket": {"gte": 100}}))
        assert outcome.matched == 0
        assert (outcome.timed.positions == -1).all()
        with live.reading():  # a key no document has
            outcome = live.search(QUERIES[:3], K, None, None, parse_filter({"absent": "x"}))
        assert outcome.matched == 0 and (outcome.timed.positions == -1).all()


def test_an_upsert_replaced_or_deleted_while_encoding_is_skipped(tmp_path):
    _build(tmp_path / "ix", "Flat")
    live = _open(tmp_path / "ix")
    store = live.store
    try:
        store.log_upserts([NewDoc("a", "one", "x"), NewDoc("b", "one", "x"), NewDoc("d7", "one", "x")])
        taken = store.pending()  # a worker took these to encode...
        store.log_upserts([NewDoc("a", "two", "y")])  # ...meanwhile a is upserted again and b deleted
        assert store.delete(["b"])[0].was_pending
        encoded = {p.doc.id: _vector(p.doc.id, p.doc.title) for p in taken}
        applied = store.apply_encoded([(p, encoded[p.doc.id]) for p in taken])
        assert [(a.id, a.pos, a.replaced) for a in applied] == [("d7", N, 7)]
        live.apply(applied, encoded)
        assert [(p.doc.id, p.doc.title) for p in store.pending()] == [("a", "two")]
        assert store.get("a")["state"] == "encoding" and store.get("b") is None
        assert store.get("d7")["title"] == "one" and store.get("d7")["version"] == 3
        with pytest.raises(ValueError, match="duplicate document ids in one batch"):
            store.log_upserts([NewDoc("c", "t", "x"), NewDoc("c", "t", "y")])
        with pytest.raises(ValueError, match="is not above the store's last version"):
            store.log_upserts([NewDoc("c", "t", "x")], first_version=store.version)
        assert store.get("c") is None and store.version == 5
        assert [(d.id, d.version, d.pos, d.was_pending) for d in store.delete(["nope"])] == [
            ("nope", None, None, False)
        ]
        assert store.version == 5  # an id found nowhere changes nothing, not even the version
    finally:
        live.close()


# --- a kill at every crash point -------------------------------------------------------------------------------

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.indexes.test_live import _crash_child
_crash_child(sys.argv[2], sys.argv[3])
"""

# writes the child makes (after BEFORE_CRASH, which the parent made and committed)
BEFORE_CRASH = WRITES
CHILD_UPSERT = [(f"m{i}", "B") for i in range(10)] + [("d1", "B"), ("n0", "B")]
CHILD_DELETE = ["d2", "n1", "m0"]


def _crash_child(index_dir: str, scenario: str) -> None:
    """Run in a child process whose CRASH_ENV names a step: take writes (or compact) and die there."""
    live = _open(Path(index_dir))
    if scenario == "writes":
        _write(live, "upsert", CHILD_UPSERT)
        _write(live, "delete", CHILD_DELETE)
    else:
        live.compact()
    live.close()


def _run_child(path: Path, scenario: str, step: str | None) -> None:
    from semsearch_common.atomic import CRASH_ENV, CRASH_EXIT_CODE

    env = {key: value for key, value in os.environ.items() if key != CRASH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if step is not None:
        env[CRASH_ENV] = step
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(path), scenario], env=env,
                          timeout=120, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == (0 if step is None else CRASH_EXIT_CODE), done.stderr


def _check_directory(path: Path, factory: str, truth: Truth, assert_same_top_k) -> LiveIndex:
    """The directory loads, read-only and for writes, and both equal exact search over `truth`, which must be what
    the store holds; returns the writable one."""
    reader = _open(path, writable=False)
    try:
        _check_against_exact(reader, factory, truth, assert_same_top_k=assert_same_top_k)
    finally:
        reader.close()
    live = _open(path)
    store = live.store
    records = store.records(store.live_positions())
    assert {r.id: r.title for r in records.values()} == truth.docs, "the store lost or kept the wrong writes"
    # the vectors the index holds are those of the store's live documents (rebuilt from each record's title)
    _check_against_exact(live, factory, truth, assert_same_top_k=assert_same_top_k)
    _check_against_exact(live, factory, truth, {"bucket": {"lt": 10}}, assert_same_top_k=assert_same_top_k)
    return live


def _built_and_written(path: Path, factory: str, writes: list) -> Truth:
    """A directory built at `path`, then `writes` applied through a writable open (closed again); their truth."""
    _build(path, factory)
    truth = Truth()
    live = _open(path)
    for kind, payload in writes:
        _write(live, kind, payload, truth)
    live.close()
    return truth


@pytest.mark.parametrize("step", [*LIVE_STEPS, None])
def test_a_kill_during_a_write_loses_no_committed_write(tmp_path, step, assert_same_top_k):
    factory = "Flat"
    path = tmp_path / "ix"
    truth = _built_and_written(path, factory, BEFORE_CRASH)

    _run_child(path, "writes", step)

    expected = truth.copy()
    if step in ("deleted", "encoded_applied", None):
        expected.upsert(CHILD_UPSERT)  # logged and committed (encoded_applied: still pending, applied below)
    if step is None:
        expected.delete(CHILD_DELETE)
    if step == "encoded_applied":
        pending_truth = expected
        expected = truth
    live = _check_directory(path, factory, expected, assert_same_top_k)
    try:
        store = live.store
        if step == "encoded_applied":  # the upserts were logged: they are still pending, then applied by a worker
            assert sorted(p.doc.id for p in store.pending()) == sorted(i for i, _ in CHILD_UPSERT)
            assert store.get("m3")["state"] == "encoding" and store.get("d1")["replaces_version"] is not None
            pending = store.pending()
            vectors = {p.doc.id: _vector(p.doc.id, p.doc.title) for p in pending}
            live.apply(store.apply_encoded([(p, vectors[p.doc.id]) for p in pending]), vectors)
            live.close()
            live = _check_directory(path, factory, pending_truth, assert_same_top_k)
        else:
            assert live.store.pending_count() == 0
    finally:
        live.close()


@pytest.mark.parametrize("step", [*GENERATION_STEPS, *COMPACTION_STEPS])
def test_a_kill_during_compaction_leaves_a_directory_equal_to_its_store(tmp_path, step, assert_same_top_k):
    factory = "Flat"  # rows implicit: removals are hidden until a compaction (and its search parameters are none)
    path = tmp_path / "ix"
    truth = _built_and_written(path, factory, WRITES)

    _run_child(path, "compact", step)

    committed = step not in ("generation_index", "generation_vectors")  # meta.json names the new generation
    live = _check_directory(path, factory, truth, assert_same_top_k)
    try:
        generation = live.status()["generation"]
        assert generation == (1 if committed else 0)
        assert len(live.hidden) == (0 if committed else REMOVED)
        expected_files = ["index.g1.faiss", "vectors.g1.npy"] if committed else ["index.faiss", "vectors.npy"]
        assert _index_files(path) == expected_files, "a writable open sweeps what the crash left"
        _write(live, "upsert", [("after", "crash"), ("d300", "crash")], truth)  # the directory takes writes again
        _write(live, "delete", ["n40"], truth)
        assert live.compact()["live"]["generation"] == generation + 1
        live.close()
        live = _check_directory(path, factory, truth, assert_same_top_k)
        assert _index_files(path) == [f"index.g{generation + 1}.faiss", f"vectors.g{generation + 1}.npy"]
    finally:
        live.close()


def test_a_compacted_graph_is_the_graph_a_rebuild_makes_of_the_same_vectors(written, assert_same_ranking):
    """After a compaction, a living HNSW index is the index a from-scratch build makes of the live vectors in the
    same order (here the vector file is fp32, so the rows are the vectors the writes carried): what remains between
    a living graph and a rebuild is its deleted nodes before a compaction, and fp16 rows where the file is fp16."""
    with limit_threads(1):  # HNSW's parallel insertion is not deterministic
        _, live, _ = written("HNSW16")
        assert live.hidden
        live.compact()
        positions = live.store.live_positions()
        rebuilt = build_index(live.rows(positions), IndexSpec("HNSW16")).index
        for index in (rebuilt, live.index):  # a small beam: results that depend on the graph's very edges
            apply_search_params(index, {"efSearch": K})
        want_scores, want_rows = rebuilt.search(QUERIES, K)
        with live.reading():
            found = live.search(QUERIES, K, None, None).timed
    for q in range(len(QUERIES)):
        assert_same_ranking(
            found.positions[q].tolist(), found.scores[q], positions[want_rows[q]].tolist(), want_scores[q], eps=1e-6
        )
