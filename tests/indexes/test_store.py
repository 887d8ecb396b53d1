"""The index directory: round trip, atomic replacement, refusals, clear load errors, encoder checks."""

from __future__ import annotations

import json

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
        return vectors, save_index_dir(path, index, ids, docs, meta or {"factory": factory})

    return save


def test_persistence_round_trip_gives_identical_results(save_index, tmp_path):
    vectors, meta = save_index(tmp_path / "ix", factory="IVF4,Flat")
    stored = load_index_dir(tmp_path / "ix")
    assert stored.meta == meta and meta["ntotal"] == 50 and meta["dim"] == 16
    assert stored.ids.ids[7] == "d7" and stored.docs[7] == DisplayDoc("title 7", "text 7")
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
