"""Atomic writes, the one home for them: files (temp file beside the target, fsync, rename) and whole folders
(staged beside the target, every file written atomically inside, then swapped in).

A reader sees the old file or folder or the new one, never a half-written one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


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


@contextmanager
def staged_folder(out_dir: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder beside `out_dir`; on success it replaces `out_dir` whole, on error it is removed.

    Write each file inside it with `atomic_path`. Between the two renames of a replacement `out_dir` is briefly
    absent; the old folder is then at `.NAME.old-*` beside it until it is deleted.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; published folders are world-readable like any other
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            if retired.is_symlink():  # a link was replaced: drop the link, never what it points to
                retired.unlink()
            else:
                shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
