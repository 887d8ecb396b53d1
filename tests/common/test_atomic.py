"""Atomic files and the staged-folder swap: a failure never leaves a half-written target or loses the old one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.atomic import atomic_path, copy_file_atomic, save_array_atomic, staged_folder, write_json_atomic


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # the temporary file is gone
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o644


def test_json_array_and_copy_round_trip(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_array_atomic(tmp_path / "x.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), array)  # a round trip, not two computations
    copy_file_atomic(tmp_path / "a.json", tmp_path / "sub" / "b.json")
    assert (tmp_path / "sub" / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()


def test_staged_folder_swaps_in_whole_and_a_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_folder(out) as stage:
        (stage / "one.txt").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["one.txt"]
    with pytest.raises(RuntimeError), staged_folder(out) as stage:
        (stage / "two.txt").write_text("2")
        raise RuntimeError("crash before the swap")
    assert sorted(p.name for p in out.iterdir()) == ["one.txt"]
    with staged_folder(out) as stage:
        (stage / "two.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["two.txt"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or retired folders left


def test_staged_folder_replaces_a_link_without_touching_its_target(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (tmp_path / "out").symlink_to(elsewhere)
    with staged_folder(tmp_path / "out") as stage:
        (stage / "new.txt").write_text("new")
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "new.txt").exists()
    assert (elsewhere / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]
