"""The index directory: round trip, atomic and crash-safe replacement, refusals, clear load errors, encoder checks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexes.docstore import DOC_STORE_STEPS, DocRecord
from indexes.faiss_index import IndexSpec, build_index
from indexes.store import (
    DisplayDoc,
    IndexDirError,
    check_encoder_matches,
    load_index_dir,
    migrate_index_dir,
    save_index_dir,
)


@pytest.fixture
def save_index(unit_vectors):
    """`save_index(path, n=50, dim=16, factory="Flat", meta=None)`: seeded vectors saved as an index directory."""

    def save(path, n=50, dim=16, factory="Flat", meta=None, keep_vectors=True):
        vectors = unit_vectors(n, dim, seed=5)
        index = build_index(vectors, IndexSpec(factory)).index
        ids = [f"d{i}" for i in range(n)]
        docs = [DisplayDoc(f"title {i}", f"text {i}") for i in range(n)]
        encoder = {"name": "fake", "type": "fake", "dim": dim, "fingerprint": f"fake-{dim}"}
        meta = meta or {"factory": factory, "encoder": encoder}
        return vectors, save_index_dir(path, index, ids, docs, meta, vectors=vectors if keep_vectors else None)

    return save


def test_persistence_round_trip_gives_identical_results(save_index, tmp_path):
    vectors, meta = save_index(tmp_path / "ix", factory="IVF4,Flat")
    stored = load_index_dir(tmp_path / "ix")
    assert stored.meta == meta
    assert meta["ntotal"] == 50
    assert meta["dim"] == 16
    want = {7: DocRecord("d7", "title 7", "text 7"), 3: DocRecord("d3", "title 3", "text 3")}
    assert stored.docs.records([7, 3]) == want == stored.docs.records(np.array([7, 3, -1]))  # numpy positions too
    assert stored.docs.positions(["d9", "d0"]).tolist() == [9, 0]
    assert stored.docs.ids(np.array([[4, -1, 2]])) == [["d4", "d2"]]
    assert len(stored.docs) == 50
    with pytest.raises(KeyError, match="unknown document ids"):
        stored.docs.positions(["nope"])
    np.testing.assert_allclose(stored.vectors.rows(np.arange(50)), vectors, atol=1e-3)  # fp16 by default
    assert stored.vectors.dtype_name == "fp16" and meta["vector_file"]["dtype"] == "fp16"
    original = build_index(vectors, IndexSpec("IVF4,Flat")).index
    np.testing.assert_array_equal(stored.index.search(vectors[:5], 5)[1], original.search(vectors[:5], 5)[1])
    assert not list(tmp_path.glob(".*")), "no staging or temporary files are left behind"


def test_failed_save_keeps_the_previous_index(save_index, tmp_path, monkeypatch):
    save_index(tmp_path / "ix")
    before = (tmp_path / "ix" / "index.faiss").read_bytes()
    import indexes.store as store

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_json_atomic", explode)
    with pytest.raises(OSError, match="disk full"):
        save_index(tmp_path / "ix", n=60)
    assert (tmp_path / "ix" / "index.faiss").read_bytes() == before
    assert load_index_dir(tmp_path / "ix").meta["ntotal"] == 50
    assert not list(tmp_path.glob(".*"))


def test_refuses_to_overwrite_a_foreign_folder(save_index, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(IndexDirError, match="not an index directory; refusing"):
        save_index(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(IndexDirError, match="is a file, not an index directory"):
        save_index(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_load_errors_are_clear(save_index, tmp_path):
    with pytest.raises(IndexDirError, match="does not exist"):
        load_index_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexDirError, match="no meta.json"):
        load_index_dir(tmp_path / "empty")
    save_index(tmp_path / "ix")
    _drop_last_doc(tmp_path / "ix" / "docs.sqlite")
    with pytest.raises(IndexDirError, match="inconsistent sizes"):
        load_index_dir(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexDirError, match="not a readable FAISS index"):
        load_index_dir(tmp_path / "ix")
    (tmp_path / "ix" / "meta.json").write_text("{")
    with pytest.raises(IndexDirError, match="malformed JSON"):
        load_index_dir(tmp_path / "ix")


def test_encoder_mismatch_is_refused():
    meta = {"encoder": {"name": "teacher", "dim": 768, "fingerprint": "abc"}}
    check_encoder_matches(meta, {"name": "teacher", "dim": 768, "fingerprint": "abc"}, "ix")
    with pytest.raises(IndexDirError, match=r"built with encoder 'teacher' \(dim 768\).*'minilm' \(dim 384\)"):
        check_encoder_matches(meta, {"name": "minilm", "dim": 384, "fingerprint": "def"}, "ix")
    with pytest.raises(IndexDirError, match="fingerprint"):
        check_encoder_matches(meta, {"name": "teacher", "dim": 768, "fingerprint": "other"}, "ix")


def _rewrite_meta(path: Path, **changes: object) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _drop_last_doc(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM docs WHERE pos = (SELECT MAX(pos) FROM docs)")
    connection.close()


def _other_schema(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id TEXT)")
    connection.close()


def _reshape_vectors(path: Path) -> None:
    array = np.load(path)
    np.save(path, array.reshape(array.shape[1], array.shape[0]))


def _set_encoder_dim(path: Path) -> None:
    meta = json.loads(path.read_text())
    meta["encoder"]["dim"] = 64
    path.write_text(json.dumps(meta))


# (file to damage, how, what the message says): every message names the damaged file and says how to fix it
DAMAGE = {
    "truncated index": ("index.faiss", lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable FAISS index"),
    "garbage index": ("index.faiss", lambda p: p.write_bytes(b"garbage"), "not a readable FAISS index"),
    "meta is a list": ("meta.json", lambda p: p.write_text("[1, 2, 3]"), "expected a JSON object, got a list"),
    "meta keys missing": ("meta.json", lambda p: p.write_text('{"format_version": 2}'), "missing ntotal, dim, encoder"),
    "meta key types": ("meta.json", lambda p: _rewrite_meta(p, ntotal="50", encoder=[]), "ntotal should be a"),
    "meta bool count": ("meta.json", lambda p: _rewrite_meta(p, dim=True), "dim should be an integer but is True"),
    "meta malformed": ("meta.json", lambda p: p.write_text("{"), "malformed JSON"),
    "meta not utf-8": ("meta.json", lambda p: p.write_bytes(b'{"a": "\xff"}'), "not UTF-8"),
    "doc store garbage": ("docs.sqlite", lambda p: p.write_bytes(b"garbage" * 200), "not a readable document store"),
    "doc store schema": ("docs.sqlite", _other_schema, "schema version 0 with columns ['id']"),
    "doc store short": ("docs.sqlite", _drop_last_doc, "docs.sqlite 49"),
    "doc store missing": ("docs.sqlite", lambda p: p.unlink(), "is missing docs.sqlite"),
    "vectors short": ("vectors.npy", lambda p: p.write_bytes(p.read_bytes()[:-64]), "need 1728 bytes, found 1664"),
    "vectors missing": ("vectors.npy", lambda p: p.unlink(), "need 1728 bytes, found missing"),
    "vectors reshaped": ("vectors.npy", _reshape_vectors, "holds a float16 array of shape (16, 50)"),
    "encoder dim": ("meta.json", _set_encoder_dim, "dimension mismatch (index.faiss 16, meta dim 16, encoder dim 64)"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_index_directory_is_refused_naming_the_file_and_the_fix(save_index, tmp_path, case):
    name, damage, message = DAMAGE[case]
    save_index(tmp_path / "ix")
    damage(tmp_path / "ix" / name)
    with pytest.raises(IndexDirError) as raised:
        load_index_dir(tmp_path / "ix")
    text = str(raised.value)
    assert message in text, text
    assert "\n" not in text, text
    assert str(tmp_path / "ix") in text, text
    assert name in text or "inconsistent sizes" in text, text
    assert "rebuild it with `semsearch index`" in text, text


def test_save_needs_the_encoder_identity(unit_vectors, tmp_path):
    index = build_index(unit_vectors(4, 8), IndexSpec("Flat")).index
    docs = [DisplayDoc("t", "s")] * 4
    with pytest.raises(ValueError, match="needs the encoder's identity"):
        save_index_dir(tmp_path / "ix", index, ["a", "b", "c", "d"], docs, {"factory": "Flat"})


# --- a crash during the directory swap never leaves nothing at --out ------------------------------------------------

CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import indexes.store as store
from indexes.faiss_index import IndexSpec, build_index
n = int(sys.argv[3])
vectors = np.random.default_rng(1).standard_normal((n, 16)).astype(np.float32)
if sys.argv[4] == "writing":  # die in the middle of writing the stage, before meta.json
    store.write_json_atomic = lambda *args, **kwargs: os._exit(86)
docs = [store.DisplayDoc("t", "s")] * n
encoder = {"name": "fake", "type": "fake", "dim": 16, "fingerprint": "fake-16"}
store.save_index_dir(sys.argv[2], build_index(vectors, IndexSpec("Flat")).index, [f"n{i}" for i in range(n)], docs,
                     {"factory": "Flat", "encoder": encoder})
"""
ROOT = Path(__file__).resolve().parents[2]


def crash_while_saving(out: Path, n: int, step: str) -> None:
    """Save an n-vector index at `out` in a child process that dies (os._exit, no clean-up) right after `step`."""
    from semsearch_common.atomic import CRASH_ENV, CRASH_EXIT_CODE

    env = {**os.environ, CRASH_ENV: step}
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(out), str(n), step], env=env, timeout=60,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == CRASH_EXIT_CODE, done.stderr


# step -> (which index the next open finds: the previous one (50 vectors) or the new one (60), whether the crash left
# --out missing until the next open)
CRASH_STEPS = {
    "writing": (50, False),
    **{step: (50, False) for step in DOC_STORE_STEPS},  # each step of writing the document store
    "staged": (50, False),
    "ready": (50, False),
    "old_moved": (60, True),
    "new_moved": (60, False),
    "old_removed": (60, False),
}


@pytest.mark.parametrize("step", list(CRASH_STEPS))
@pytest.mark.parametrize("then", ["open", "save"])
def test_a_crash_at_any_step_of_the_swap_leaves_a_loadable_index(save_index, tmp_path, step, then):
    from semsearch_common.atomic import SWAP_STEPS

    assert set(CRASH_STEPS) == {"writing", *DOC_STORE_STEPS, *SWAP_STEPS}
    expected, out_missing = CRASH_STEPS[step]
    save_index(tmp_path / "ix")
    crash_while_saving(tmp_path / "ix", 60, step)
    assert (tmp_path / "ix").exists() != out_missing
    leftovers = sorted(p.name for p in tmp_path.glob(".ix.*"))
    assert leftovers or step == "old_removed", "the crash left the swap half-done"
    if then == "open":
        assert load_index_dir(tmp_path / "ix").meta["ntotal"] == expected
    else:  # the next save recovers first, then replaces whatever was recovered
        save_index(tmp_path / "ix", n=70)
        assert load_index_dir(tmp_path / "ix").meta["ntotal"] == 70
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"], "leftovers remain after the next open or save"


def test_a_stranded_old_directory_is_restored_when_nothing_else_survived(save_index, tmp_path):
    save_index(tmp_path / "ix")
    (tmp_path / "ix").rename(tmp_path / ".ix.old-0123abcd")  # the naming of the code before this fix
    (tmp_path / ".ix.abcd_123.tmp").mkdir()  # and its incomplete stage
    assert load_index_dir(tmp_path / "ix").meta["ntotal"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_concurrent_readers_recover_a_stranded_swap_once_and_all_load_it(save_index, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    save_index(tmp_path / "ix")
    crash_while_saving(tmp_path / "ix", 60, "old_moved")
    assert not (tmp_path / "ix").exists()
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda _: load_index_dir(tmp_path / "ix").meta["ntotal"], range(16)))
    assert sizes == [60] * 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


# --- format 1 (ids.json, docs.jsonl) -----------------------------------------------------------------------------


def _save_format_1(path: Path, vectors: np.ndarray) -> None:
    """An index directory as the previous format wrote it."""
    import faiss

    path.mkdir()
    faiss.write_index(build_index(vectors, IndexSpec("Flat")).index, str(path / "index.faiss"))
    (path / "ids.json").write_text(json.dumps([f"d{i}" for i in range(len(vectors))]))
    (path / "docs.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "title": f"t{i}", "snippet": f"s{i}"}) + "\n"
                                             for i in range(len(vectors))))  # fmt: skip
    encoder = {"name": "fake", "type": "fake", "dim": 16, "fingerprint": "fake-16"}
    meta = {"format_version": 1, "ntotal": len(vectors), "dim": 16, "encoder": encoder, "factory": "Flat",
            "index_bytes": (path / "index.faiss").stat().st_size}  # fmt: skip
    (path / "meta.json").write_text(json.dumps(meta))


def test_a_format_1_directory_is_refused_with_the_command_that_converts_it(unit_vectors, tmp_path):
    vectors = unit_vectors(30, 16, seed=2)
    _save_format_1(tmp_path / "old", vectors)
    with pytest.raises(IndexDirError, match=r"format 1 \(ids.json and docs.jsonl.*semsearch migrate-index .*old"):
        load_index_dir(tmp_path / "old")
    meta = migrate_index_dir(tmp_path / "old", vectors=vectors, vector_dtype="fp32")
    stored = load_index_dir(tmp_path / "old")
    assert meta["format_version"] == stored.meta["format_version"] == 2
    assert stored.docs.records([29]) == {29: DocRecord("d29", "t29", "s29")}
    np.testing.assert_array_equal(stored.vectors.rows(np.arange(30)), vectors)
    kept = sorted(p.name for p in (tmp_path / "old").iterdir() if not p.name.endswith(("-wal", "-shm")))  # WAL's own
    assert kept == ["docs.sqlite", "index.faiss", "meta.json", "vectors.npy"]
    with pytest.raises(IndexDirError, match="only format 1 directories .* need migrating"):
        migrate_index_dir(tmp_path / "old")


def test_migration_refuses_damaged_old_files_and_keeps_them(unit_vectors, tmp_path):
    _save_format_1(tmp_path / "old", unit_vectors(30, 16, seed=2))
    (tmp_path / "old" / "ids.json").write_text(json.dumps(["a"] * 30))
    with pytest.raises(IndexDirError, match="duplicate document id 'a'"):
        migrate_index_dir(tmp_path / "old")
    assert json.loads((tmp_path / "old" / "meta.json").read_text())["format_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
