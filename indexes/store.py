"""Persist an index directory: the FAISS file, document ids, display fields and meta.json.

The directory is staged beside its target, every file written atomically, then swapped in, so a crash
never leaves a half-written index and never loses the previous one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, staged_folder, write_json_atomic, write_text_atomic
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


def save_index_dir(
    out_dir: Path | str,
    index: Any,
    doc_ids: Sequence[str],
    docs: Sequence[DisplayDoc],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the index directory atomically and return the stored meta (with format, ntotal, dim, bytes)."""
    faiss = import_faiss()
    out_dir = Path(out_dir)
    if len(doc_ids) != index.ntotal or len(docs) != index.ntotal:
        raise ValueError(f"index holds {index.ntotal} vectors but got {len(doc_ids)} ids and {len(docs)} docs")
    _check_target(out_dir)
    with staged_folder(out_dir) as stage:
        with atomic_path(stage / INDEX_FILE) as tmp:
            faiss.write_index(index, str(tmp))
        write_json_atomic(stage / IDS_FILE, list(doc_ids))
        lines = (
            json.dumps({"id": i, "title": d.title, "snippet": d.snippet}) for i, d in zip(doc_ids, docs, strict=True)
        )
        write_text_atomic(stage / DOCS_FILE, "\n".join(lines) + "\n")
        full_meta = {
            **meta,
            "format_version": FORMAT_VERSION,
            "ntotal": int(index.ntotal),
            "dim": int(index.d),
            "index_bytes": (stage / INDEX_FILE).stat().st_size,
        }
        write_json_atomic(stage / META_FILE, full_meta)
    return full_meta


def _check_target(target: Path) -> None:
    """Refuse to replace a file or a folder that is not an index directory."""
    if target.exists() and not target.is_dir():
        raise IndexDirError(f"{target} is a file, not an index directory; choose another --out")
    if target.exists() and not (target / META_FILE).exists() and any(target.iterdir()):
        raise IndexDirError(f"{target} exists and is not an index directory; refusing to overwrite it")


def read_meta(index_dir: Path | str) -> dict[str, Any]:
    index_dir = Path(index_dir)
    meta_path = index_dir / META_FILE
    if not index_dir.is_dir():
        raise IndexDirError(f"index directory {index_dir} does not exist; build one with `semsearch index`")
    if not meta_path.exists():
        raise IndexDirError(f"{index_dir} has no {META_FILE}: not an index directory (or an incomplete one)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise IndexDirError(f"{meta_path}: malformed JSON ({err.msg})") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexDirError(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    return meta


def load_index_dir(index_dir: Path | str) -> StoredIndex:
    """Load and cross-check an index directory (file present, counts and dimension agree)."""
    faiss = import_faiss()
    index_dir = Path(index_dir)
    meta = read_meta(index_dir)
    for name in (INDEX_FILE, IDS_FILE, DOCS_FILE):
        if not (index_dir / name).exists():
            raise IndexDirError(f"{index_dir} is missing {name}")
    try:
        index = faiss.read_index(str(index_dir / INDEX_FILE))
    except RuntimeError as err:
        raise IndexDirError(f"{index_dir / INDEX_FILE} is not a readable FAISS index: {err}") from err
    ids = DocIdMap(json.loads((index_dir / IDS_FILE).read_text(encoding="utf-8")))
    docs = tuple(
        DisplayDoc(rec["title"], rec["snippet"])
        for rec in map(json.loads, (index_dir / DOCS_FILE).read_text(encoding="utf-8").splitlines())
    )
    if not (index.ntotal == len(ids) == len(docs) == meta["ntotal"]):
        raise IndexDirError(
            f"{index_dir}: inconsistent sizes (index {index.ntotal}, ids {len(ids)}, docs {len(docs)}, "
            f"meta {meta['ntotal']})"
        )
    if index.d != meta["dim"]:
        raise IndexDirError(f"{index_dir}: index dimension {index.d} != meta dim {meta['dim']}")
    return StoredIndex(index, ids, docs, meta, index_dir)


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
