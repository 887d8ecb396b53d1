"""Persist an index directory: the FAISS file, document ids, display fields and meta.json.

The directory is staged beside its target, every file written atomically (meta.json last), then swapped in, so a
crash never leaves a half-written index and never loses the previous one: the next open or save finishes an
interrupted swap (`common.atomic.recover_folder`). Loading checks every file and names the one at fault, with the fix.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, recover_folder, staged_folder, write_json_atomic, write_text_atomic
from indexes.faiss_index import import_faiss
from indexes.ids import DocIdMap

FORMAT_VERSION = 1
INDEX_FILE, META_FILE, IDS_FILE, DOCS_FILE = "index.faiss", "meta.json", "ids.json", "docs.jsonl"


class IndexDirError(ValueError):
    """An index directory is missing, incomplete, inconsistent, or does not match its encoder."""


@dataclass(frozen=True)
class DisplayDoc:
    """What a search hit shows besides its id."""

    title: str
    snippet: str


@dataclass(frozen=True)
class StoredIndex:
    index: Any
    ids: DocIdMap
    docs: tuple[DisplayDoc, ...]
    meta: dict[str, Any]
    path: Path
    mmap: bool = False  # index.faiss read through a memory map (on-disk inverted lists are mapped whatever this says)


def save_index_dir(
    out_dir: Path | str,
    index: Any,
    doc_ids: Sequence[str],
    docs: Sequence[DisplayDoc],
    meta: Mapping[str, Any],
    extra_files: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Write the index directory atomically and return the stored meta (with format, ntotal, dim, bytes).

    `extra_files` (name -> path) are moved into the directory with it: the on-disk inverted lists (`.ivfdata`) of an
    index merged from shards, which index.faiss names and `load_index_dir` finds beside it."""
    faiss = import_faiss()
    out_dir = Path(out_dir)
    if len(doc_ids) != index.ntotal or len(docs) != index.ntotal:
        raise ValueError(f"index holds {index.ntotal} vectors but got {len(doc_ids)} ids and {len(docs)} docs")
    if not isinstance(meta.get("encoder"), Mapping):
        raise ValueError("the index metadata needs the encoder's identity under 'encoder' (Encoder.identity())")
    _check_target(out_dir)
    with staged_folder(out_dir) as stage:
        for name, source in (extra_files or {}).items():
            move_durably(Path(source), stage / name)
        with atomic_path(stage / INDEX_FILE) as tmp:
            faiss.write_index(index, str(tmp))
        write_json_atomic(stage / IDS_FILE, list(doc_ids))
        lines = (
            json.dumps({"id": i, "title": d.title, "snippet": d.snippet}) for i, d in zip(doc_ids, docs, strict=True)
        )
        write_text_atomic(stage / DOCS_FILE, "\n".join(lines) + "\n")
        full_meta = {  # written last: a stage holding meta.json is complete (the swap also marks it, by a rename)
            **meta,
            "format_version": FORMAT_VERSION,
            "ntotal": int(index.ntotal),
            "dim": int(index.d),
            "index_bytes": (stage / INDEX_FILE).stat().st_size,
            "index_files": {name: (stage / name).stat().st_size for name in (INDEX_FILE, *(extra_files or {}))},
            "on_disk_lists": bool(extra_files),
        }
        write_json_atomic(stage / META_FILE, full_meta)
    return full_meta


def _check_target(target: Path) -> None:
    """Refuse to replace a file or a folder that is not an index directory."""
    if target.exists() and not target.is_dir():
        raise IndexDirError(f"{target} is a file, not an index directory; choose another --out")
    if target.exists() and not (target / META_FILE).exists() and any(target.iterdir()):
        raise IndexDirError(f"{target} exists and is not an index directory; refusing to overwrite it")


# meta.json keys every index directory has, with their JSON types; `save_index_dir` adds the first three itself.
REQUIRED_META: dict[str, type] = {"format_version": int, "ntotal": int, "dim": int, "encoder": dict}
OPTIONAL_META: dict[str, type] = {"doc_encoder": dict, "search_params": dict, "factory": str}
REBUILD = "rebuild it with `semsearch index`"


def read_meta(index_dir: Path | str) -> dict[str, Any]:
    """Read and check `meta.json` (an object, this format version, the required keys with their types).

    First finishes any save a crash interrupted (`common.atomic.recover_folder`), so a stranded directory is restored.
    """
    index_dir = Path(index_dir)
    recover_folder(index_dir)
    meta_path = index_dir / META_FILE
    if not index_dir.is_dir():
        raise IndexDirError(f"index directory {index_dir} does not exist; build one with `semsearch index`")
    if not meta_path.exists():
        raise IndexDirError(f"{index_dir} has no {META_FILE}: not an index directory (or an incomplete one); {REBUILD}")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise IndexDirError(f"{meta_path}: expected a JSON object, got {_article(_json_type(meta))}; {REBUILD}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexDirError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}; {REBUILD}"
        )
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise IndexDirError(f"{meta_path}: missing {', '.join(missing)}; {REBUILD}")
    wrong = [
        f"{key} should be {_article(_json_type(kind()))} but is {meta[key]!r:.40}"
        for key, kind in {**REQUIRED_META, **OPTIONAL_META}.items()
        if key in meta and not _is_json_type(meta[key], kind)
    ]
    if wrong:
        raise IndexDirError(f"{meta_path}: {'; '.join(wrong)}; {REBUILD}")
    if meta["ntotal"] < 0 or meta["dim"] < 1:
        raise IndexDirError(f"{meta_path}: ntotal {meta['ntotal']} and dim {meta['dim']} must be >= 0 and >= 1")
    return meta


def _is_json_type(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise IndexDirError(f"{path}: not UTF-8 text (byte {err.start}); the file is corrupt, {REBUILD}") from err
    except OSError as err:
        raise IndexDirError(f"{path}: cannot read it ({err.strerror}); check its permissions or {REBUILD}") from err


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise IndexDirError(f"{path}: malformed JSON ({err.msg} at line {err.lineno}); {REBUILD}") from err


def _read_ids(path: Path) -> DocIdMap:
    ids = _read_json(path)
    if not isinstance(ids, list):
        raise IndexDirError(f"{path}: expected a JSON list of document ids, got {_article(_json_type(ids))}; {REBUILD}")
    bad = next((i for i, doc_id in enumerate(ids) if not isinstance(doc_id, str)), None)
    if bad is not None:
        raise IndexDirError(f"{path}: id [{bad}] is {_article(_json_type(ids[bad]))}, not a string; {REBUILD}")
    try:
        return DocIdMap(ids)
    except ValueError as err:
        raise IndexDirError(f"{path}: {err}; {REBUILD}") from err


def _read_docs(path: Path) -> tuple[DisplayDoc, ...]:
    docs = []
    text = _read_text(path).removesuffix("\n")
    lines = text.split("\n") if text else []  # not splitlines(), which also splits on U+2028 and other separators
    for line_no, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise IndexDirError(f"{path}:{line_no}: malformed JSON ({err.msg}); {REBUILD}") from err
        if not (
            isinstance(record, dict) and isinstance(record.get("title"), str) and isinstance(record.get("snippet"), str)
        ):
            raise IndexDirError(f"{path}:{line_no}: expected an object with string title and snippet; {REBUILD}")
        docs.append(DisplayDoc(record["title"], record["snippet"]))
    return tuple(docs)


def move_durably(source: Path, target: Path) -> None:
    """Move `source` to `target` (a rename on one filesystem, else a copy) and fsync it."""
    try:
        os.replace(source, target)
    except OSError:
        shutil.copyfile(source, target)
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())


def _read_faiss(path: Path, mmap: bool = False, on_disk_lists: bool = False) -> Any:
    """index.faiss; `mmap` maps the index's lists or codes instead of reading them (pages are read when a search
    touches them). On-disk inverted lists are always read through a map, from beside index.faiss (the folder may have
    moved since it was written); FAISS 1.15 crashes when IO_FLAG_MMAP is also given for them, so it never is."""
    faiss = import_faiss()
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR if on_disk_lists else (faiss.IO_FLAG_MMAP if mmap else 0)
    try:
        return faiss.read_index(str(path), flags)
    except (RuntimeError, MemoryError, OSError) as err:
        reason = " ".join(str(err).split())
        reason = reason.rsplit(": ", 1)[-1] if ": " in reason else reason  # FAISS prefixes its C++ location
        raise IndexDirError(
            f"{path} is not a readable FAISS index (truncated or corrupt: {reason[:160]}); {REBUILD}"
        ) from err


def load_index_dir(index_dir: Path | str, mmap: bool = False) -> StoredIndex:
    """Load and cross-check an index directory (files present and well-formed, counts and dimensions agree);
    `mmap`: memory-map the index rather than read it whole (IVF lists and flat codes; FAISS 1.15)."""
    index_dir = Path(index_dir)
    meta = read_meta(index_dir)
    for name in (INDEX_FILE, IDS_FILE, DOCS_FILE):
        if not (index_dir / name).is_file():
            raise IndexDirError(f"{index_dir} is missing {name}; {REBUILD}")
    for name in meta.get("index_files", {}):
        if not (index_dir / name).is_file():
            raise IndexDirError(f"{index_dir} is missing {name} (its on-disk inverted lists); {REBUILD}")
    on_disk_lists = bool(meta.get("on_disk_lists", False))
    index = _read_faiss(index_dir / INDEX_FILE, mmap, on_disk_lists)
    ids = _read_ids(index_dir / IDS_FILE)
    docs = _read_docs(index_dir / DOCS_FILE)
    counts = {INDEX_FILE: index.ntotal, IDS_FILE: len(ids), DOCS_FILE: len(docs), META_FILE: meta["ntotal"]}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise IndexDirError(f"{index_dir}: inconsistent sizes ({listed}); the directory is damaged, {REBUILD}")
    encoder_dim = meta["encoder"].get("dim")
    if index.d != meta["dim"] or (encoder_dim is not None and encoder_dim != index.d):
        raise IndexDirError(
            f"{index_dir / META_FILE}: dimension mismatch (index.faiss {index.d}, meta dim {meta['dim']}, encoder "
            f"dim {encoder_dim}); {REBUILD} and the encoder it should be searched with"
        )
    return StoredIndex(index, ids, docs, meta, index_dir, mmap and not on_disk_lists)


def index_memory(stored: StoredIndex) -> dict[str, Any]:
    """The index's bytes on disk and in this process's RAM, measured now.

    `on_disk_bytes`: its files (index.faiss and any on-disk lists). `resident_bytes`: what of them this process holds
    in RAM: the resident pages of the memory-mapped files (psutil's per-mapping RSS, from /proc/self/smaps), plus
    index.faiss's size when it was read whole rather than mapped (its quantizer, codes or lists live in RAM then).
    """
    import psutil

    files = {name: stored.path / name for name in stored.meta.get("index_files", {INDEX_FILE: 0})}
    on_disk = sum(path.stat().st_size for path in files.values() if path.exists())
    wanted = {str(path.resolve()) for path in files.values()}
    try:
        mapped = sum(m.rss for m in psutil.Process().memory_maps(grouped=True) if m.path in wanted)
    except (psutil.Error, OSError):  # some systems do not expose mappings
        mapped = 0
    read_whole = 0 if stored.mmap else files[INDEX_FILE].stat().st_size
    return {
        "on_disk_bytes": on_disk,
        "resident_bytes": mapped + read_whole,
        "mapped_resident_bytes": mapped,
        "memory_mapped": stored.mmap or bool(stored.meta.get("on_disk_lists", False)),
        "on_disk_lists": bool(stored.meta.get("on_disk_lists", False)),
    }


def check_encoder_matches(meta: Mapping[str, Any], identity: Mapping[str, Any], where: Path | str) -> None:
    """Refuse to search an index with an encoder other than the one that built it."""
    built = meta.get("encoder", {})
    for key in ("dim", "fingerprint"):
        if built.get(key) != identity.get(key):
            raise IndexDirError(
                f"{where} was built with encoder {built.get('name')!r} ({key} {built.get(key)!r}) but the query "
                f"encoder is {identity.get('name')!r} ({key} {identity.get(key)!r}); rebuild the index or use the "
                "encoder it was built with"
            )
