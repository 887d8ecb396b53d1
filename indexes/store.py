"""Persist an index directory: the FAISS file, the document store, the vector file and meta.json.

- `index.faiss`: the codes FAISS searches (and, for IVF merged from shards, `lists.ivfdata` beside it);
- `docs.sqlite`: document ids, titles and snippets by position (`indexes.docstore`), read per hit;
- `vectors.npy`: the full-precision vectors (fp16 or fp32, `indexes.vector_file`), memory-mapped, for rescoring
  candidates from disk; optional (`--vectors none`);
- `meta.json`: what built it, the search defaults, and the size of every file.

Format 1 directories (ids.json and docs.jsonl, read whole into Python objects) are refused with the command that
converts them (`semsearch migrate-index`, which calls `migrate_index_dir`).

The directory is staged beside its target, every file written atomically (meta.json last), then swapped in, so a
crash never leaves a half-written index and never loses the previous one: the next open or save finishes an
interrupted swap (`semsearch_common.atomic.recover_folder`). Loading checks every file and names the one at fault, with
the fix.

An IVF index merged from shards keeps its inverted lists in a second file (`OnDiskInvertedLists`, `lists.ivfdata`):
it is saved inside the directory with the rest, and loaded from beside index.faiss wherever the folder has moved.

What FAISS 1.15.1 memory-maps (`load_index_dir(mmap=True)` reads with `IO_FLAG_MMAP_IFC`), measured by the resident
pages of index.faiss's mapping before and after a search (tests/indexes/test_store_ondisk.py): the codes of flat-code
indexes (Flat, SQ8, PQ), the inverted lists (codes and ids) and coarse quantizer of IVF indexes, also under OPQ and
inside `,RFlat` (whose full vectors are mapped too), and HNSW's vectors and graph. Matrices (OPQ), list sizes and
precomputed tables are still read into RAM. `IO_FLAG_MMAP`, FAISS's older flag, maps IVF lists only and reads flat
codes and HNSW whole; given for an index whose lists are already on disk it skips mapping them altogether, so it is
never used here. On-disk lists are always read through a map, whatever `mmap` says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:  # POSIX; elsewhere no lock is taken and one writer per directory is the user's job
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from indexes.docstore import DOCS_DB, DisplayDoc, DocStore, DocStoreError, write_doc_store
from indexes.faiss_index import import_faiss
from indexes.ids import DocIdMap
from indexes.vector_file import (
    DEFAULT_VECTOR_DTYPE,
    VECTORS_FILE,
    VectorFile,
    VectorFileError,
    open_vectors,
    write_vector_rows,
    write_vectors,
)
from semsearch_common.atomic import atomic_path, crash_point, recover_folder, staged_folder, write_json_atomic

__all__ = [  # the names other packages use
    "DOCS_DB", "FORMAT_VERSION", "INDEX_FILE", "META_FILE", "VECTORS_FILE", "DisplayDoc", "IndexDirError",
    "StoredIndex", "check_encoder_matches", "index_memory", "load_index_dir", "migrate_index_dir", "on_disk_lists",
    "read_meta", "save_index_dir", "index_file_name", "write_generation", "sweep_generations",
    "open_vector_file",
]  # fmt: skip

FORMAT_VERSION = 2
LEGACY_FORMAT = 1  # ids.json + docs.jsonl
INDEX_FILE, META_FILE = "index.faiss", "meta.json"
LEGACY_IDS_FILE, LEGACY_DOCS_FILE = "ids.json", "docs.jsonl"
GENERATION_STEPS = ("generation_index", "generation_vectors", "generation_meta")  # crash points of write_generation
MIGRATE = "convert it with `semsearch migrate-index {path}` (or rebuild it with `semsearch index`)"


class IndexDirError(ValueError):
    """An index directory is missing, incomplete, inconsistent, or does not match its encoder."""


@dataclass(frozen=True)
class StoredIndex:
    index: Any
    docs: DocStore
    meta: dict[str, Any]
    path: Path
    mmap: bool = False  # index.faiss read through a memory map (on-disk inverted lists are mapped whatever this says)
    vectors: VectorFile | None = None  # the full-precision vectors for rescoring, when the directory keeps them


def save_index_dir(
    out_dir: Path | str,
    index: Any,
    doc_ids: Sequence[str],
    docs: Sequence[DisplayDoc],
    meta: Mapping[str, Any],
    extra_files: Mapping[str, Path] | None = None,
    vectors: np.ndarray | None = None,
    vector_dtype: str = DEFAULT_VECTOR_DTYPE,
) -> dict[str, Any]:
    """Write the index directory atomically and return the stored meta (with format, ntotal, dim, bytes, the size
    of each index file, and whether the inverted lists are on disk).

    `vectors` (ntotal, dim), when given, are kept in `vectors.npy` as `vector_dtype` (fp16 or fp32) for rescoring
    from disk. `extra_files` (name -> path) go into the directory with the rest, hard-linked (no copy of a large file;
    copied across file systems) and swapped in with it: the on-disk inverted lists of an index merged from shards,
    which must be given under the file name index.faiss records for them (`load_index_dir` finds them beside it)."""
    faiss = import_faiss()
    out_dir = Path(out_dir)
    extra_files = {name: Path(source) for name, source in (extra_files or {}).items()}
    if len(doc_ids) != index.ntotal or len(docs) != index.ntotal:
        raise ValueError(f"index holds {index.ntotal} vectors but got {len(doc_ids)} ids and {len(docs)} docs")
    if vectors is not None and vectors.shape != (index.ntotal, index.d):
        raise ValueError(
            f"index holds ({index.ntotal}, {index.d}) vectors but the vector file would hold {vectors.shape}"
        )
    if not isinstance(meta.get("encoder"), Mapping):
        raise ValueError("the index metadata needs the encoder's identity under 'encoder' (Encoder.identity())")
    _check_extra_files(index, extra_files)
    _check_target(out_dir)
    with staged_folder(out_dir) as stage:
        for name, source in extra_files.items():
            _link_or_copy(source, stage / name)
        with atomic_path(stage / INDEX_FILE) as tmp:
            faiss.write_index(index, str(tmp))
        stored_vectors = _write_docs_and_vectors(stage, doc_ids, docs, vectors, vector_dtype)
        full_meta = {  # written last: a stage holding meta.json is complete (the swap also marks it, by a rename)
            **{key: value for key, value in meta.items() if key != "vector_file"},
            **stored_vectors,
            "format_version": FORMAT_VERSION,
            "ntotal": int(index.ntotal),
            "dim": int(index.d),
            "index_bytes": (stage / INDEX_FILE).stat().st_size,
            "index_files": {name: (stage / name).stat().st_size for name in (INDEX_FILE, *extra_files)},
            "on_disk_lists": on_disk_lists(index) is not None,
            "doc_store": DOCS_DB,
        }
        write_json_atomic(stage / META_FILE, full_meta)
    return full_meta


def _write_docs_and_vectors(
    stage: Path, doc_ids: Sequence[str], docs: Sequence[DisplayDoc], vectors: np.ndarray | None, vector_dtype: str
) -> dict[str, Any]:
    """Write the document store and (when given) the vector file into `stage`, each atomically; return the meta.json
    entry of the vector file ({} without one)."""
    with atomic_path(stage / DOCS_DB) as tmp:
        write_doc_store(tmp, doc_ids, docs)
    if vectors is None:
        return {}
    with atomic_path(stage / VECTORS_FILE) as tmp:
        size = write_vectors(tmp, vectors, vector_dtype)
    return {"vector_file": {"name": VECTORS_FILE, "dtype": vector_dtype, "bytes": size}}


def on_disk_lists(index: Any) -> Any | None:
    """The index's `OnDiskInvertedLists` (a view; `index` owns it), or None when its lists are in memory or it has
    none."""
    faiss = import_faiss()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


def _check_extra_files(index: Any, extra_files: Mapping[str, Path]) -> None:
    """Raise ValueError unless every extra file exists under a plain, free name, and on-disk lists are among them."""
    reserved = (INDEX_FILE, META_FILE, DOCS_DB, VECTORS_FILE)
    for name, source in extra_files.items():
        if name in reserved or not name or name != Path(name).name or name.startswith("."):
            raise ValueError(f"extra file name {name!r}: use a plain file name other than {', '.join(reserved)}")
        if not source.is_file():
            raise ValueError(f"extra file {name!r}: {source} is not a file")
    lists = on_disk_lists(index)
    if lists is not None and Path(lists.filename).name not in extra_files:
        given = ", ".join(extra_files) or "none"
        raise ValueError(
            f"the index keeps its inverted lists in {lists.filename}: pass extra_files="
            f"{{{Path(lists.filename).name!r}: path}} so the directory holds them (given: {given})"
        )


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` at `target` (the source stays where it is: a failed save loses nothing), or copy it where
    links are not possible (another file system); `staged_folder` fsyncs it before the swap."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _check_target(target: Path) -> None:
    """Refuse to replace a file, a folder that is not an index directory, or one a process holds open for writes."""
    if target.exists() and not target.is_dir():
        raise IndexDirError(f"{target} is a file, not an index directory; choose another --out")
    if target.exists() and not (target / META_FILE).exists() and any(target.iterdir()):
        raise IndexDirError(f"{target} exists and is not an index directory; refusing to overwrite it")
    if (target / WRITE_LOCK).is_file():
        hold_write_lock(target).close()  # raises while a server or `semsearch add` writes to it


WRITE_LOCK = ".write.lock"


class DirectoryBusyError(IndexDirError):
    """Another process holds the index directory open for writes."""


def hold_write_lock(index_dir: Path) -> Any:
    """An exclusive lock on the directory's writes, held while the returned file is open; DirectoryBusyError when
    another process holds it (a server with writes enabled, or a `semsearch add` or `delete`)."""
    handle = (Path(index_dir) / WRITE_LOCK).open("a+")
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.close()
            raise DirectoryBusyError(
                f"{index_dir} is open for writes by another process (a server with writes "
                "enabled, or an add or delete): write through it, or stop it first"
            ) from err
    return handle


# meta.json keys every index directory has, with their JSON types; `save_index_dir` adds the first three itself.
REQUIRED_META: dict[str, type] = {"format_version": int, "ntotal": int, "dim": int, "encoder": dict}
OPTIONAL_META: dict[str, type] = {
    "doc_encoder": dict,
    "search_params": dict,
    "factory": str,
    "index_files": dict,
    "on_disk_lists": bool,
    "vector_file": dict,
    "doc_store": str,
    "index_file": str,
    "live": dict,
}
REBUILD = "rebuild it with `semsearch index`"


def read_meta(index_dir: Path | str) -> dict[str, Any]:
    """Read and check `meta.json` (an object, this format version, the required keys with their types).

    First finishes any save a crash interrupted (`semsearch_common.atomic.recover_folder`), so a stranded directory is
    restored.
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
    if meta.get("format_version") == LEGACY_FORMAT:
        raise IndexDirError(
            f"{index_dir} is an index directory of format {LEGACY_FORMAT} (ids.json and docs.jsonl, read whole into "
            f"RAM); {MIGRATE.format(path=index_dir)}"
        )
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


def migrate_index_dir(
    index_dir: Path | str, vectors: np.ndarray | None = None, vector_dtype: str = DEFAULT_VECTOR_DTYPE
) -> dict[str, Any]:
    """Convert a format 1 directory (ids.json, docs.jsonl) to this format, atomically (the FAISS files hard-linked,
    the document store written from the old files, `vectors` kept as the vector file when given); return the new
    meta. Raises IndexDirError for a directory that is not format 1 or whose old files are damaged."""
    index_dir = Path(index_dir)
    recover_folder(index_dir)
    meta_path = index_dir / META_FILE
    if not meta_path.is_file():
        raise IndexDirError(f"{index_dir} has no {META_FILE}: not an index directory")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format_version") != LEGACY_FORMAT:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise IndexDirError(f"{index_dir} is of format {found!r}: only format {LEGACY_FORMAT} directories (ids.json, "
                            f"docs.jsonl) need migrating; this one loads as it is")  # fmt: skip
    for name in (LEGACY_IDS_FILE, LEGACY_DOCS_FILE, *_index_files(meta)):
        if not (index_dir / name).is_file():
            raise IndexDirError(f"{index_dir} is missing {name}; {REBUILD}")
    ids = _read_ids(index_dir / LEGACY_IDS_FILE)
    docs = _read_docs(index_dir / LEGACY_DOCS_FILE)
    ntotal, dim = meta.get("ntotal"), meta.get("dim")
    if not len(ids) == len(docs) == ntotal:
        raise IndexDirError(f"{index_dir}: inconsistent sizes ({LEGACY_IDS_FILE} {len(ids)}, {LEGACY_DOCS_FILE} "
                            f"{len(docs)}, {META_FILE} {ntotal}); {REBUILD}")  # fmt: skip
    if vectors is not None and vectors.shape != (ntotal, dim):
        raise ValueError(f"the index holds ({ntotal}, {dim}) vectors; the given vectors are {vectors.shape}")
    with staged_folder(index_dir) as stage:
        for name in _index_files(meta):
            _link_or_copy(index_dir / name, stage / name)
        stored_vectors = _write_docs_and_vectors(stage, ids.ids, docs, vectors, vector_dtype)
        new_meta = {**meta, "format_version": FORMAT_VERSION, "doc_store": DOCS_DB, **stored_vectors}
        write_json_atomic(stage / META_FILE, new_meta)
    return new_meta


def _read_faiss(path: Path, mmap: bool = False, lists_on_disk: bool = False) -> Any:
    """index.faiss, read-only; `mmap`: its codes, lists and vectors memory-mapped rather than read (see the module
    docstring), pages then come from disk as searches touch them. On-disk lists (`lists_on_disk`) are mapped from
    beside index.faiss by `_map_lists_beside`: FAISS's own IO_FLAG_ONDISK_SAME_DIR does the same but prints a line
    to stdout (which would corrupt `--json` output) and cannot be combined with IO_FLAG_MMAP_IFC."""
    faiss = import_faiss()
    flags = faiss.IO_FLAG_READ_ONLY | (faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    if lists_on_disk:
        flags |= faiss.IO_FLAG_SKIP_IVF_DATA  # read the lists' layout only; they are mapped below
    try:
        index = faiss.read_index(str(path), flags)
    except (RuntimeError, MemoryError, OSError) as err:
        reason = " ".join(str(err).split())
        reason = reason.rsplit(": ", 1)[-1] if ": " in reason else reason  # FAISS prefixes its C++ location
        raise IndexDirError(
            f"{path} is not a readable FAISS index (truncated or corrupt: {reason[:160]}); {REBUILD}"
        ) from err
    if lists_on_disk:
        _map_lists_beside(index, path)
    return index


def _map_lists_beside(index: Any, index_path: Path) -> None:
    """Map the index's on-disk inverted lists from the file of the recorded name beside `index_path` (read-only),
    after checking it holds every byte the lists address (a short file would crash a search with SIGBUS)."""
    lists = on_disk_lists(index)
    if lists is None:
        raise IndexDirError(f"{index_path}: meta.json says its lists are on disk but the index holds none; {REBUILD}")
    lists_path = index_path.parent / Path(lists.filename).name
    size = lists_path.stat().st_size if lists_path.is_file() else None
    if size is None or size < lists.totsize:
        found = "missing" if size is None else f"{size} bytes"
        raise IndexDirError(
            f"{lists_path}: the on-disk inverted lists need {lists.totsize} bytes, found {found}; {REBUILD}"
        )
    lists.filename = str(lists_path.resolve())
    try:
        lists.do_mmap()
    except RuntimeError as err:
        raise IndexDirError(f"{lists_path}: cannot map the on-disk inverted lists ({err}); {REBUILD}") from err


def load_index_dir(index_dir: Path | str, mmap: bool = False) -> StoredIndex:
    """Load and cross-check an index directory (files present and well-formed, counts and dimensions agree).

    `mmap`: memory-map index.faiss rather than read it whole, so an index bigger than RAM can be searched (what FAISS
    maps: see the module docstring); the index is then read-only. The document store is opened read-only and the
    vector file (if any) memory-mapped, whatever `mmap` says: neither is ever read whole."""
    index_dir = Path(index_dir)
    meta = read_meta(index_dir)
    index_file = index_file_name(meta)
    for name in (index_file, DOCS_DB):
        if not (index_dir / name).is_file():
            raise IndexDirError(f"{index_dir} is missing {name}; {REBUILD}")
    for name, size in _index_files(meta).items():
        if name == index_file:
            continue  # checked by FAISS as it reads it, with its own message
        if not (index_dir / name).is_file():
            raise IndexDirError(f"{index_dir} is missing {name} (its on-disk inverted lists); {REBUILD}")
        if (index_dir / name).stat().st_size != size:
            raise IndexDirError(
                f"{index_dir / name}: {(index_dir / name).stat().st_size} bytes, meta.json says {size}; the file is "
                f"damaged, {REBUILD}"
            )
    lists_on_disk = meta.get("on_disk_lists") is True
    index = _read_faiss(index_dir / index_file, mmap, lists_on_disk)
    try:
        docs = DocStore.open(index_dir / DOCS_DB)
    except DocStoreError as err:
        raise IndexDirError(f"{err}; {REBUILD}") from err
    counts = {index_file: index.ntotal, META_FILE: meta["ntotal"]}
    if not docs.written:  # a directory written to: its store says what is live, its index replays it (indexes.live)
        counts[DOCS_DB] = len(docs)
    if len(set(counts.values())) > 1:
        docs.close()
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise IndexDirError(f"{index_dir}: inconsistent sizes ({listed}); the directory is damaged, {REBUILD}")
    encoder_dim = meta["encoder"].get("dim")
    if index.d != meta["dim"] or (encoder_dim is not None and encoder_dim != index.d):
        docs.close()
        raise IndexDirError(
            f"{index_dir / META_FILE}: dimension mismatch (index.faiss {index.d}, meta dim {meta['dim']}, encoder "
            f"dim {encoder_dim}); {REBUILD} and the encoder it should be searched with"
        )
    try:
        vectors = open_vector_file(index_dir, meta)
    except IndexDirError:
        docs.close()
        raise
    return StoredIndex(index, docs, meta, index_dir, mmap, vectors)


def open_vector_file(index_dir: Path, meta: Mapping[str, Any]) -> VectorFile | None:
    """The directory's vector file, mapped, after checking it against meta.json; None when it keeps none."""
    spec = meta.get("vector_file")
    if spec is None:
        return None
    name, dtype, size = spec.get("name"), spec.get("dtype"), spec.get("bytes")
    if not _is_vector_file_name(name) or not isinstance(dtype, str) or not isinstance(size, int):
        raise IndexDirError(f"{index_dir / META_FILE}: vector_file should be {{name, dtype, bytes}}, got {spec!r:.80}; "
                            f"{REBUILD}")  # fmt: skip
    path = index_dir / name
    found = path.stat().st_size if path.is_file() else None
    if found != size:
        state = "missing" if found is None else f"{found} bytes"
        raise IndexDirError(f"{path}: the full-precision vectors need {size} bytes, found {state}; {REBUILD} (or "
                            "with --vectors none to keep no vector file)")  # fmt: skip
    try:
        return open_vectors(path, live_positions(meta), meta["dim"], dtype)
    except VectorFileError as err:
        raise IndexDirError(f"{err}; {REBUILD}") from err


def index_file_name(meta: Mapping[str, Any]) -> str:
    """The FAISS file of the directory: index.faiss as built, a generation's file once a living index saved one."""
    name = meta.get("index_file", INDEX_FILE)
    if not re.fullmatch(r"index(\.g\d+)?\.faiss", name):
        raise IndexDirError(f"meta.json names index file {name!r:.80}, not index.faiss or index.gN.faiss; {REBUILD}")
    return name


def _is_vector_file_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"vectors(\.g\d+)?\.npy", name) is not None


def live_positions(meta: Mapping[str, Any]) -> int:
    """Rows of the vector file: one per position ever given (a living index's positions only grow), else ntotal."""
    live = meta.get("live")
    return int(live["positions"]) if isinstance(live, Mapping) else int(meta["ntotal"])


def _index_files(meta: Mapping[str, Any]) -> dict[str, int]:
    """meta.json's `index_files` (name -> bytes); directories written before it existed hold index.faiss only."""
    files = meta.get("index_files")
    if isinstance(files, Mapping) and all(isinstance(k, str) and isinstance(v, int) for k, v in files.items()):
        return dict(files)
    return {INDEX_FILE: int(meta.get("index_bytes", 0))}


def index_memory(stored: StoredIndex) -> dict[str, Any]:
    """The index's bytes on disk and in this process's RAM, measured now.

    `on_disk_bytes`: the sizes of its files now (index.faiss and any on-disk lists). `resident_bytes`: what of them
    this process holds in RAM: the resident pages of every memory-mapped index file (psutil's per-file RSS, from
    /proc/self/smaps: pages a search touched, and the kernel's read-around of them), plus, when index.faiss was read
    whole rather than mapped, its size (its quantizer, codes or lists were copied into the heap). What FAISS copies
    even under `mmap` (OPQ matrices, list sizes, precomputed tables: small beside the codes) is not counted. Pages are
    counted per file, so two loads of one directory in this process count together; where the system gives no
    per-mapping figures (no /proc), mapped pages count 0.

    Beside them: the vector file's size and resident pages (`vector_file_*`: rescoring reads its candidates' rows,
    and the kernel may drop them at will), and the document store's size (SQLite reads it through its page cache,
    at most `indexes.docstore.CACHE_KIB` per connection).
    """
    files = {name: stored.path / name for name in _index_files(stored.meta)}
    on_disk = sum(path.stat().st_size for path in files.values() if path.is_file())
    vector_path = stored.vectors.path if stored.vectors is not None else stored.path / VECTORS_FILE
    resident = _mapped_resident([*files.values(), vector_path])
    mapped = sum(resident.get(str(path.resolve()), 0) for path in files.values())
    read_whole = 0 if stored.mmap else files[index_file_name(stored.meta)].stat().st_size
    lists_on_disk = stored.meta.get("on_disk_lists") is True
    return {
        "on_disk_bytes": on_disk,
        "resident_bytes": mapped + read_whole,
        "mapped_resident_bytes": mapped,
        "memory_mapped": stored.mmap or lists_on_disk,  # some of the index is read through a map
        "on_disk_lists": lists_on_disk,
        "vector_file_bytes": vector_path.stat().st_size if stored.vectors is not None else 0,
        "vector_file_resident_bytes": resident.get(str(vector_path.resolve()), 0) if stored.vectors is not None else 0,
        "doc_store_bytes": (stored.path / DOCS_DB).stat().st_size,
    }


def _mapped_resident(paths: Sequence[Path]) -> dict[str, int]:
    """Resident bytes of this process's mappings of `paths` (resolved path -> bytes); empty where the system gives
    no per-mapping figures."""
    import psutil

    wanted = {str(path.resolve()) for path in paths}
    try:
        return {m.path: m.rss for m in psutil.Process().memory_maps(grouped=True) if m.path in wanted}
    except (psutil.Error, OSError, NotImplementedError, AttributeError):  # no per-mapping figures on this system
        return {}


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


def write_generation(
    index_dir: Path | str,
    index: Any,
    meta: Mapping[str, Any],
    positions: int,
    rows: Callable[[int, int], np.ndarray] | None,
    tombstone_seq: int,
) -> dict[str, Any]:
    """Save a living index's state as the directory's next generation: `index` as index.gN.faiss, the vector file
    (when the directory keeps one) as vectors.gN.npy with `positions` rows (`rows(start, stop)`: float32 rows, zeros
    for positions no longer live), then meta.json (the commit: a crash before it leaves the previous generation, and
    the new files are swept by `sweep_generations`). The document store is not touched: it is the source of truth,
    and `live` in meta.json records how much of it the generation holds (positions below `positions`, tombstones up
    to `tombstone_seq`). Returns the new meta; the caller deletes the previous generation's files."""
    faiss = import_faiss()
    index_dir = Path(index_dir)
    generation = int(meta.get("live", {}).get("generation", 0)) + 1
    index_name = f"index.g{generation}.faiss"
    with atomic_path(index_dir / index_name) as tmp:
        faiss.write_index(index, str(tmp))
    crash_point("generation_index")
    new_meta = {**meta, "index_file": index_name, "ntotal": int(index.ntotal)}
    new_meta["index_files"] = {index_name: (index_dir / index_name).stat().st_size}
    new_meta["index_bytes"] = new_meta["index_files"][index_name]
    spec = meta.get("vector_file")
    if spec is not None:
        if rows is None:
            raise ValueError("the directory keeps a vector file: give the rows to write")
        name = f"vectors.g{generation}.npy"
        with atomic_path(index_dir / name) as tmp:
            size = write_vector_rows(tmp, (positions, int(meta["dim"])), rows, spec["dtype"])
        new_meta["vector_file"] = {**spec, "name": name, "bytes": size}
        crash_point("generation_vectors")
    new_meta["live"] = {"generation": generation, "positions": int(positions), "tombstone_seq": int(tombstone_seq)}
    write_json_atomic(index_dir / META_FILE, new_meta)
    crash_point("generation_meta")
    return new_meta


def sweep_generations(index_dir: Path | str, meta: Mapping[str, Any]) -> list[str]:
    """Delete the generation files meta.json does not name (older generations, or a save a crash interrupted);
    return their names. Call only while holding the directory for writes."""
    index_dir = Path(index_dir)
    keep = {index_file_name(meta), (meta.get("vector_file") or {}).get("name")}
    swept = []
    for path in index_dir.iterdir():
        name = path.name
        if name not in keep and (re.fullmatch(r"index(\.g\d+)?\.faiss", name) or _is_vector_file_name(name)):
            path.unlink(missing_ok=True)
            swept.append(name)
    return swept
