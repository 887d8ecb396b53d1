"""Atomic writes, the one home for them: files (temp file beside the target, fsync, rename, fsync of the folder) and
whole folders (staged beside the target, every file fsynced, then swapped in), with recovery after a crash.

A reader sees the old file or folder or the new one, never a half-written one; a crash never loses both.

The folder swap, and the names it leaves beside `NAME` if the process dies part-way:

1. `.NAME.stage-TOKEN`: the caller writes into it (incomplete while it has this name);
2. every file and folder in it is fsynced, then it is renamed `.NAME.ready-TOKEN` (complete);
3. `NAME` (if any) is renamed `.NAME.old-TOKEN`; 4. the ready folder is renamed `NAME`; 5. the old one is deleted.

The parent folder is fsynced after each rename. `recover_folder(NAME)` (run by the next `staged_folder` on the same
target, and by readers such as `indexes.store.read_meta`) finishes a swap a crash interrupted: when `NAME` is missing
it restores the newest ready folder, else the newest old one, then deletes the other leftovers. A live writer holds
an exclusive `flock` on its stage folder (so recovery leaves it alone) and on the parent folder during the renames
(so a reader never recovers half-way through a live swap); recovery takes the same parent lock, so concurrent readers
and writers are safe, and one that loses a race (a leftover already gone) carries on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:  # POSIX; elsewhere the locks are no-ops and only the renames protect the swap
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

STAGE, READY, OLD = "stage", "ready", "old"
# Test hook: a step name from SWAP_STEPS here makes `staged_folder` die (os._exit) right after that step, so a test
# can show a crash at each point leaves a loadable folder. Never set it outside tests.
CRASH_ENV = "SEMSEARCH_CRASH_AT"
CRASH_EXIT_CODE = 86
SWAP_STEPS = ("staged", "ready", "old_moved", "new_moved", "old_removed")


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published files are world-readable like any other
        os.replace(tmp, target)
        fsync_dir(target.parent)  # the rename itself survives a power cut only once the folder is synced
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: Path | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path | str, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_array_atomic(target: Path | str, array: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        with tmp.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)


def copy_file_atomic(source: Path | str, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def fsync_dir(folder: Path | str) -> None:
    """fsync a folder, so renames and creations inside it are durable (a no-op where folders cannot be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. EINVAL on file systems that do not sync folders
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file under `root`, then every folder, deepest first."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def crash_point(step: str) -> None:
    """Test-only fault injection: die at once, with no clean-up, when CRASH_ENV names this step."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(CRASH_EXIT_CODE)


class _DirLock:
    """An exclusive `flock` on a folder, held from `acquire` until `release` (or the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def acquire(self, blocking: bool = True) -> bool:
        """True once held; False when another holder has it and `blocking` is off."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        except OSError:  # locks unsupported on this file system: rely on the renames alone
            return True
        return True

    def release(self) -> None:
        os.close(self.fd)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    lock = _DirLock(folder)
    try:
        lock.acquire()
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class _Leftover:
    kind: str  # STAGE, READY or OLD
    path: Path


def _leftovers(target: Path) -> list[_Leftover]:
    """The stage, ready and old folders a swap into `target` left beside it (and stages of the older naming)."""
    name = re.escape(target.name)
    current = re.compile(rf"^\.{name}\.(?P<kind>{STAGE}|{READY}|{OLD})-[0-9a-f]{{8,32}}$")
    legacy_stage = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}\.tmp$")  # mkdtemp stages before the stage-/ready- names
    found = []
    try:
        entries = list(os.scandir(target.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        match = current.match(entry.name)
        if match:
            found.append(_Leftover(match["kind"], Path(entry.path)))
        elif legacy_stage.match(entry.name) and entry.is_dir(follow_symlinks=False):
            found.append(_Leftover(STAGE, Path(entry.path)))
    return found


def _abandoned(leftover: _Leftover) -> bool:
    """Whether no live writer holds this leftover (old folders are only ever seen abandoned: see `_swap`)."""
    if leftover.kind == OLD or os.path.islink(leftover.path):
        return True
    try:
        lock = _DirLock(leftover.path)
    except FileNotFoundError:
        return False  # gone meanwhile: nothing to do
    except OSError:
        return True
    try:
        return lock.acquire(blocking=False)
    finally:
        lock.release()


def _remove(path: Path) -> None:
    """Delete a file, a link (never what it points to) or a folder tree; already gone is fine."""
    if os.path.islink(path) or os.path.isfile(path):
        Path(path).unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _newest(leftovers: list[_Leftover]) -> _Leftover | None:
    def mtime(leftover: _Leftover) -> int:
        try:
            return os.lstat(leftover.path).st_mtime_ns
        except FileNotFoundError:
            return -1

    return max(leftovers, key=lambda leftover: (mtime(leftover), leftover.path.name), default=None)


def recover_folder(target: Path | str) -> str | None:
    """Finish a folder swap a crash interrupted, and delete its leftovers; cheap when there are none.

    When `target` is missing, the newest complete (`ready`) folder is restored, else the newest retired (`old`) one.
    Leftovers a live writer still holds are left alone. Returns "ready" or "old" when a folder was restored, else
    None. Errors (a read-only folder, say) are logged, not raised: the caller then reports what it cannot open.
    """
    target = Path(target)
    if not _leftovers(target):
        return None
    restored: str | None = None
    try:
        with _locked(target.parent):
            abandoned = [leftover for leftover in _leftovers(target) if _abandoned(leftover)]
            if not os.path.lexists(target):
                chosen = _newest([x for x in abandoned if x.kind == READY]) or _newest(
                    [x for x in abandoned if x.kind == OLD]
                )
                if chosen is not None:
                    os.replace(chosen.path, target)
                    fsync_dir(target.parent)
                    restored = chosen.kind
                    logger.warning(
                        "%s was missing after an interrupted save: restored the %s version from %s",
                        target,
                        "new" if chosen.kind == READY else "previous",
                        chosen.path.name,
                    )
                    abandoned.remove(chosen)
            for leftover in abandoned:
                _remove(leftover.path)
            if abandoned:
                fsync_dir(target.parent)
    except FileNotFoundError:  # another process recovered first (lost a race): what it left is what we wanted
        pass
    except OSError as err:
        logger.warning("cannot recover %s from an interrupted save: %s", target, err)
    return restored


def _token() -> str:
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


def _swap(ready: Path, target: Path, token: str) -> None:
    """Steps 3-5, under the parent lock: retire `target`, move `ready` in, delete the retired one."""
    parent = target.parent
    if not os.path.lexists(target):
        os.replace(ready, target)
        fsync_dir(parent)
        crash_point("new_moved")
        return
    retired = parent / f".{target.name}.{OLD}-{token}"
    os.replace(target, retired)
    fsync_dir(parent)
    crash_point("old_moved")
    try:
        os.replace(ready, target)
    except OSError:
        os.replace(retired, target)  # put the previous folder back before reporting the failure
        fsync_dir(parent)
        raise
    fsync_dir(parent)
    crash_point("new_moved")
    _remove(retired)  # a retired link is unlinked, never what it points to
    fsync_dir(parent)
    crash_point("old_removed")


@contextmanager
def staged_folder(out_dir: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder beside `out_dir`; on success it replaces `out_dir` whole, on error it is removed.

    Write each file inside it (with `atomic_path` or directly: every file is fsynced before the swap). A crash at any
    point leaves `out_dir` or a recoverable sibling (see the module docstring); leftovers of an earlier crash are
    recovered first.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out_dir)
    token = _token()
    stage = parent / f".{out_dir.name}.{STAGE}-{token}"
    ready = parent / f".{out_dir.name}.{READY}-{token}"
    with _locked(parent):  # created and locked at once, so recovery never mistakes it for an abandoned one
        stage.mkdir()
        hold = _DirLock(stage)
        hold.acquire()
    try:
        yield stage
        os.chmod(stage, 0o755)  # published folders are world-readable like any other
        _fsync_tree(stage)
        crash_point("staged")
        with _locked(parent):
            os.replace(stage, ready)
            fsync_dir(parent)
            crash_point("ready")
            _swap(ready, out_dir, token)
    finally:
        hold.release()
        if os.path.lexists(stage):  # incomplete: the body failed
            _remove(stage)
        if os.path.lexists(ready):  # complete, but the swap was interrupted: restore it if out_dir is gone, else drop
            recover_folder(out_dir)
