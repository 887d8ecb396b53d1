"""Atomic files and the staged-folder swap: a failure or a crash never leaves a half-written target or loses the old
one; the next open or save recovers an interrupted swap."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semsearch_common.atomic import atomic_path, copy_file_atomic, save_array_atomic, staged_folder, write_json_atomic


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
    assert not (tmp_path / "out").is_symlink()
    assert (tmp_path / "out" / "new.txt").exists()
    assert (elsewhere / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]


CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from semsearch_common.atomic import staged_folder
with staged_folder(sys.argv[2]) as stage:
    (Path(stage) / "version.txt").write_text("new")
    (Path(stage) / "sub").mkdir()
    (Path(stage) / "sub" / "data.txt").write_text("new data")
"""
ROOT = Path(__file__).resolve().parents[2]


def _crash_during_swap(out: Path, step: str) -> None:
    from semsearch_common.atomic import CRASH_ENV, CRASH_EXIT_CODE

    env = {**os.environ, CRASH_ENV: step}
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(out)], env=env, timeout=60, capture_output=True)
    assert done.returncode == CRASH_EXIT_CODE, done.stderr


# step -> the version `recover_folder` finds afterwards (a crash before the old folder moves keeps it; after, the new
# folder is complete and is what the swap was installing)
EXPECTED_AFTER = {"staged": "old", "ready": "old", "old_moved": "new", "new_moved": "new", "old_removed": "new"}


@pytest.mark.parametrize("step", list(EXPECTED_AFTER))
def test_a_crash_at_each_step_of_the_swap_is_recovered(tmp_path: Path, step: str) -> None:
    from semsearch_common.atomic import SWAP_STEPS, recover_folder

    assert tuple(EXPECTED_AFTER) == SWAP_STEPS
    out = tmp_path / "out"
    out.mkdir()
    (out / "version.txt").write_text("old")
    _crash_during_swap(out, step)
    recover_folder(out)
    assert (out / "version.txt").read_text() == EXPECTED_AFTER[step]
    if EXPECTED_AFTER[step] == "new":
        assert (out / "sub" / "data.txt").read_text() == "new data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_first_save_that_crashed_after_staging_is_restored_and_one_mid_write_is_dropped(tmp_path: Path) -> None:
    from semsearch_common.atomic import recover_folder

    out = tmp_path / "out"
    _crash_during_swap(out, "ready")  # complete, but never moved in: nothing else to fall back on
    assert not out.exists()
    assert recover_folder(out) == "ready"
    assert (out / "version.txt").read_text() == "new"
    (tmp_path / ".other.stage-0123456789abcdef").mkdir()  # another target's leftovers are not ours
    shutil.rmtree(out)
    _crash_during_swap(out, "staged")  # incomplete: deleted, never restored
    assert recover_folder(out) is None
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.stage-0123456789abcdef"]


def test_recovery_leaves_a_live_writers_stage_alone(tmp_path: Path) -> None:
    from semsearch_common.atomic import recover_folder

    out = tmp_path / "out"
    with staged_folder(out) as stage:
        (stage / "a.txt").write_text("a")
        assert recover_folder(out) is None  # as a concurrent reader would, while the writer is still writing
        assert (stage / "a.txt").exists()
    assert (out / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_folder_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with staged_folder(tmp_path / "out") as stage:
        (stage / "new.txt").write_text("new")
    assert (tmp_path / "out" / "new.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_interrupted_swap_in_process_keeps_the_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch_common.atomic as atomic

    out = tmp_path / "out"
    with staged_folder(out) as stage:
        (stage / "version.txt").write_text("old")

    def interrupt(step: str) -> None:
        if step == "old_moved":
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "crash_point", interrupt)
    with pytest.raises(KeyboardInterrupt), staged_folder(out) as stage:
        (stage / "version.txt").write_text("new")
    assert (out / "version.txt").read_text() == "new"  # the complete new folder was restored, not dropped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
