"""Teacher targets: a per-text store keyed by teacher, truncation and precision; unfinished shards are ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.distill import (
    TARGETS_DIR,
    compute_teacher_targets,
    targets_cache_key,
    texts_fingerprint,
)
from compression.encoders import FakeEncoder, load_encoder
from compression.precision import resolve_precision


def test_the_store_key_ignores_the_teachers_location_and_holds_length_and_precision() -> None:
    identity = {"type": "st", "name": "teacher", "fingerprint": "abc", "path": "/somewhere"}
    key = targets_cache_key(identity, 128, "fp32")
    assert len(key) == 32
    assert targets_cache_key({**identity, "path": "/elsewhere"}, 128, "fp32") == key
    assert targets_cache_key(identity, 64, "fp32") != key
    assert targets_cache_key(identity, 128, "bf16") != key
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])  # length-prefixed: no collision


def test_teacher_targets_are_the_teachers_unit_vectors_cached_per_text(make_sentences) -> None:
    teacher = FakeEncoder(dim=16)
    texts = make_sentences(10, 0)
    first, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert not cached
    assert sum(teacher.calls) == 10
    np.testing.assert_allclose(first, FakeEncoder(dim=16).encode(texts, kind="passage"), atol=1e-6)
    second, cached = compute_teacher_targets(teacher, texts, max_seq_length=64, show_progress=False)
    assert cached
    assert sum(teacher.calls) == 10  # the teacher was not called again
    np.testing.assert_array_equal(first, second)  # the same rows, read back from disk
    # any other list of known texts (reordered, a subset, with repeats) is served from the store too
    picked = [texts[7], texts[2], texts[7], texts[0]]
    rows, cached = compute_teacher_targets(teacher, picked, max_seq_length=64, show_progress=False)
    assert cached
    assert sum(teacher.calls) == 10
    np.testing.assert_array_equal(rows, first[[7, 2, 7, 0]])
    # only the new texts are encoded
    extra = make_sentences(3, 9)
    rows, cached = compute_teacher_targets(teacher, [texts[1], *extra], max_seq_length=64, show_progress=False)
    assert not cached
    assert teacher.calls[-1] == 3
    np.testing.assert_array_equal(rows[0], first[1])
    np.testing.assert_allclose(rows[1:], FakeEncoder(dim=16).encode(extra, kind="passage"), atol=1e-6)
    # another truncation or another teacher is another space
    _, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert not cached
    _, cached = compute_teacher_targets(FakeEncoder(dim=8), texts, max_seq_length=64, show_progress=False)
    assert not cached


def test_an_unfinished_or_damaged_shard_is_ignored_and_its_texts_recomputed(
    isolated_cache: Path, make_sentences
) -> None:
    teacher = FakeEncoder(dim=8)
    texts = make_sentences(6, 1)
    expected, _ = compute_teacher_targets(teacher, texts[:3], max_seq_length=32, show_progress=False)
    compute_teacher_targets(teacher, texts[3:], max_seq_length=32, show_progress=False)
    (folder,) = (isolated_cache / TARGETS_DIR).iterdir()
    first, second = sorted(folder.glob("shard-*.npy"))
    second.with_suffix(".json").unlink()  # a run killed between the rows and the JSON that publishes them
    first.write_bytes(b"garbage")  # a damaged shard
    teacher.calls.clear()
    rows, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert not cached
    assert teacher.calls == [6]
    np.testing.assert_allclose(rows[:3], expected, atol=1e-6)
    teacher.calls.clear()
    _, cached = compute_teacher_targets(teacher, texts, max_seq_length=32, show_progress=False)
    assert cached
    assert not teacher.calls


def test_precision_resolves_to_an_allowed_value() -> None:
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto", device="cuda") == "bf16"
    assert resolve_precision("auto") in ("fp32", "bf16")
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16")


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
