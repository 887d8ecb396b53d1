"""Teacher targets: cached by teacher, texts and truncation; old cache entries and checkpoints stay valid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from compression.distill import TARGETS_DIR, compute_teacher_targets, targets_cache_key, texts_fingerprint
from compression.encoders import FakeEncoder, load_encoder


def old_key(identity: dict, texts: list[str], max_seq_length: int) -> str:
    """The cache key as the hand-written cache computed it before it moved to `RowCache`."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(f"{len(text.encode())}:".encode() + text.encode())
    payload = {
        "teacher": {k: v for k, v in identity.items() if k != "path"},
        "texts": digest.hexdigest(),
        "max_seq_length": max_seq_length,
        "kind": "passage",
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def test_the_cache_key_is_unchanged_and_ignores_the_teachers_location() -> None:
    identity = {"type": "st", "name": "teacher", "fingerprint": "abc", "path": "/somewhere"}
    texts = ["a first text", "ünïcode text"]
    key = targets_cache_key(identity, texts_fingerprint(texts), 128)
    assert key == old_key(identity, texts, 128) and len(key) == 32
    assert targets_cache_key({**identity, "path": "/elsewhere"}, texts_fingerprint(texts), 128) == key
    assert targets_cache_key(identity, texts_fingerprint(texts), 64) != key
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])  # length-prefixed: no collision


def test_teacher_targets_are_the_teachers_unit_vectors_cached_by_teacher_texts_and_length(make_sentences) -> None:
    teacher = FakeEncoder(dim=16)
    texts = make_sentences(10, 0)
    first, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert not cached and sum(teacher.calls) == 10
    np.testing.assert_allclose(first, FakeEncoder(dim=16).encode(texts, kind="passage"), atol=1e-6)
    second, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert cached and sum(teacher.calls) == 10  # the teacher was not called again
    np.testing.assert_array_equal(first, second)  # the same array, read back from disk
    _, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert not cached
    _, cached = compute_teacher_targets(teacher, texts[::-1], max_seq_length=64, show_progress=False)
    assert not cached
    _, cached = compute_teacher_targets(FakeEncoder(dim=8), texts, max_seq_length=64, show_progress=False)
    assert not cached


def test_an_entry_written_by_the_old_cache_is_reused(isolated_cache: Path, make_sentences) -> None:
    teacher = FakeEncoder(dim=8)
    texts = make_sentences(6, 1)
    folder = isolated_cache / TARGETS_DIR
    folder.mkdir(parents=True)
    key = old_key(teacher.identity(), texts, 32)
    stored = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    np.save(folder / f"{key}.npy", stored)
    meta = {"n": 6, "dim": 8, "max_seq_length": 32, "teacher": teacher.identity(), "seconds": 1.5}
    (folder / f"{key}.json").write_text(json.dumps(meta))
    vectors, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert cached and not teacher.calls
    np.testing.assert_array_equal(vectors, stored)


def test_an_old_checkpoint_is_resumed_where_it_stopped(isolated_cache: Path, make_sentences) -> None:
    teacher = FakeEncoder(dim=8)
    texts = make_sentences(9, 2)
    folder = isolated_cache / TARGETS_DIR
    folder.mkdir(parents=True)
    key = old_key(teacher.identity(), texts, 32)
    partial = np.zeros((9, 8), dtype=np.float32)
    partial[:4] = 7.0  # marks the rows the interrupted run had done
    np.save(folder / f"{key}.partial.npy", partial)
    (folder / f"{key}.partial.json").write_text(json.dumps({"done": 4}))  # the old checkpoint had no seconds
    vectors, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert not cached and teacher.calls == [5]
    np.testing.assert_array_equal(vectors[:4], partial[:4])
    np.testing.assert_allclose(vectors[4:], FakeEncoder(dim=8).encode(texts[4:], kind="passage"), atol=1e-6)
    assert sorted(p.name for p in folder.iterdir()) == [f"{key}.json", f"{key}.npy"]  # checkpoint removed


def test_without_the_cache_nothing_is_written(isolated_cache: Path, make_sentences) -> None:
    teacher = FakeEncoder(dim=8)
    texts = make_sentences(3, 3)
    for _ in range(2):
        _, cached = compute_teacher_targets(teacher, texts, 32, use_cache=False, show_progress=False)
        assert not cached
    assert teacher.calls == [3, 3]
    assert not list((isolated_cache / TARGETS_DIR).glob("*"))


def test_teacher_targets_truncate_the_teacher_to_the_student_length(tiny_teacher: Path, make_sentences) -> None:
    teacher = load_encoder(str(tiny_teacher), threads=1)
    long_text = " ".join(make_sentences(20, 5))
    short, _ = compute_teacher_targets(teacher, [long_text], max_seq_length=16, use_cache=False, show_progress=False)
    full, _ = compute_teacher_targets(teacher, [long_text], max_seq_length=128, use_cache=False, show_progress=False)
    assert not np.allclose(short, full)
    assert teacher._model.max_seq_length == 128  # restored afterwards
