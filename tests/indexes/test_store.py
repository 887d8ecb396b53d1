"""The index directory: round trip, atomic and crash-safe replacement, refusals, clear load errors, encoder checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexes.faiss_index import IndexSpec, build_index
from indexes.store import DisplayDoc, IndexDirError, check_encoder_matches, load_index_dir, save_index_dir


@pytest.fixture
def save_index(unit_vectors):
    """`save_index(path, n=50, dim=16, factory="Flat", meta=None)`: seeded vectors saved as an index directory."""

    def save(path, n=50, dim=16, factory="Flat", meta=None):
        vectors = unit_vectors(n, dim, seed=5)
        index = build_index(vectors, IndexSpec(factory)).index
        ids = [f"d{i}" for i in range(n)]
        docs = [DisplayDoc(f"title {i}", f"text {i}") for i in range(n)]
        encoder = {"name": "fake", "type": "fake", "dim": dim, "fingerprint": f"fake-{dim}"}
        return vectors, save_index_dir(path, index, ids, docs, meta or {"factory": factory, "encoder": encoder})

    return save


def test_persistence_round_trip_gives_identical_results(save_index, tmp_path):
    vectors, meta = save_index(tmp_path / "ix", factory="IVF4,Flat")
    stored = load_index_dir(tmp_path / "ix")
    assert stored.meta == meta
    assert meta["ntotal"] == 50
    assert meta["dim"] == 16
    assert stored.ids.ids[7] == "d7"
    assert stored.docs[7] == DisplayDoc("title 7", "text 7")
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
    ids_path = tmp_path / "ix" / "ids.json"
    ids_path.write_text(json.dumps(json.loads(ids_path.read_text())[:-1]))
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


def _set_encoder_dim(path: Path) -> None:
    meta = json.loads(path.read_text())
    meta["encoder"]["dim"] = 64
    path.write_text(json.dumps(meta))


# (file to damage, how, what the message says): every message names the damaged file and says how to fix it
DAMAGE = {
    "truncated index": ("index.faiss", lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable FAISS index"),
    "garbage index": ("index.faiss", lambda p: p.write_bytes(b"garbage"), "not a readable FAISS index"),
    "meta is a list": ("meta.json", lambda p: p.write_text("[1, 2, 3]"), "expected a JSON object, got a list"),
    "meta keys missing": ("meta.json", lambda p: p.write_text('{"format_version": 1}'), "missing ntotal, dim, encoder"),
    "meta key types": ("meta.json", lambda p: _rewrite_meta(p, ntotal="50", encoder=[]), "ntotal should be a"),
    "meta bool count": ("meta.json", lambda p: _rewrite_meta(p, dim=True), "dim should be an integer but is True"),
    "meta malformed": ("meta.json", lambda p: p.write_text("{"), "malformed JSON"),
    "meta not utf-8": ("meta.json", lambda p: p.write_bytes(b'{"a": "\xff"}'), "not UTF-8"),
    "ids garbage": ("ids.json", lambda p: p.write_text("xx"), "malformed JSON"),
    "ids an object": ("ids.json", lambda p: p.write_text("{}"), "expected a JSON list of document ids"),
    "ids not strings": ("ids.json", lambda p: p.write_text(json.dumps(list(range(50)))), "id [0] is an integer, not"),
    "ids duplicated": ("ids.json", lambda p: p.write_text(json.dumps(["d0"] * 50)), "duplicate document id 'd0'"),
    "ids too few": ("ids.json", lambda p: p.write_text(json.dumps([f"d{i}" for i in range(49)])), "ids.json 49"),
    "docs garbage line": ("docs.jsonl", lambda p: p.write_text("garbage\n"), "docs.jsonl:1: malformed JSON"),
    "docs not objects": ("docs.jsonl", lambda p: p.write_text("[1]\n" * 50), "docs.jsonl:1: expected an object"),
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

    assert set(CRASH_STEPS) == {"writing", *SWAP_STEPS}
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
