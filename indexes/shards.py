"""An index built from shards: trained once, filled per contiguous shard (anywhere: a Ray task, another machine),
merged. Plain functions over arrays and file paths, so the distributed engine runs this same FAISS code.

- `shard_ranges(n, shards)`: contiguous [start, stop) parts of 0..n.
- `merge_kind(index_or_factory)`: how shards of a trained index are merged. "ondisk": IVF indexes (also under a
  pre-transform such as OPQ) merge their inverted lists into one file, as FAISS's `merge_ondisk` does (the lists of
  shard 0, then 1, ..., so each list holds what one in-order build holds); "in_memory": flat-code indexes (Flat, SQ,
  PQ) are concatenated with `merge_from`; "driver": everything else cannot be filled from independent shards and is
  filled in one process: HNSW links every vector to neighbours anywhere in the corpus (graphs built per shard would
  never link across them), `,RFlat` keeps a second index of full vectors beside its IVF/PQ base, and an IDMap keeps
  its own id table.
- `fill_shard(trained_path, vectors, start, out_path)`: a copy of the trained index filled with the shard, ids the
  GLOBAL positions start.., written atomically with a completion record (`.json`, written last), so a resumed build
  trusts exactly the shards that finished (`shard_is_complete`).
- `merge_shards(trained_path, shard_paths, ivfdata_path, out_index_path=)`: the merged index (IVF lists in
  `ivfdata_path`), after checking the shards are complete, contiguous from 0 and filled from this trained index.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexes.faiss_index import import_faiss, validate_factory
from semsearch_common.atomic import atomic_path, write_json_atomic

MergeKind = Literal["ondisk", "in_memory", "driver"]


@dataclass(frozen=True)
class ShardInfo:
    """What a finished shard holds: its `.json` completion record, written after the index file."""

    start: int  # global id (corpus position) of its first vector
    count: int
    ntotal: int
    dim: int
    kind: str  # merge_kind of the index
    index_type: str  # FAISS class of the top-level index, e.g. IndexIVFPQ, IndexPreTransform
    index_bytes: int  # size of the shard's index file: a truncated or rewritten file no longer matches
    trained_sha256: str  # the trained index it was filled from: shards of another training are never merged


def shard_ranges(n: int, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous [start, stop) ranges covering 0..n, sizes differing by at most one."""
    if n < 1:
        raise ValueError(f"nothing to shard: {n} vectors")
    if not 1 <= shards <= n:
        raise ValueError(f"shards must be 1..{n} (the number of vectors), got {shards}")
    bounds = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def merge_kind(index_or_factory: Any) -> MergeKind:
    """How shards of a trained index (or of a factory string's index) can be merged; see the module docstring."""
    faiss = import_faiss()
    index = _index_of_factory(index_or_factory) if isinstance(index_or_factory, str) else index_or_factory
    node = faiss.downcast_index(index)  # a view: `index` keeps owning the C++ object while it is used
    if isinstance(node, faiss.IndexRefine | faiss.IndexIDMap | faiss.IndexIVFPQR):
        return "driver"  # a second store of vectors or ids beside the lists, which merge_ondisk would drop
    ivf = _ivf(node)
    if ivf is not None:  # lists merge_ondisk can read (not the block lists of fast-scan indexes)
        plain = isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists)
        return "ondisk" if plain else "driver"
    if isinstance(node, faiss.IndexFlatCodes):
        return "in_memory"
    return "driver"


def _index_of_factory(factory: str) -> Any:
    """An untrained index of `factory` at a dimension every PQ/OPQ size in it divides (only its structure matters)."""
    faiss = import_faiss()
    dim = math.lcm(8, *(int(m) for m in re.findall(r"(?:PQ|_)(\d+)", factory)))
    validate_factory(factory, dim)
    return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


def _ivf(index: Any) -> Any | None:
    try:
        return import_faiss().extract_index_ivf(index)
    except RuntimeError:
        return None


def write_index_file(index: Any, path: Path) -> None:
    """`faiss.write_index`, atomically (the trained index, a shard, a merged index)."""
    faiss = import_faiss()
    with atomic_path(Path(path)) as tmp:
        faiss.write_index(index, str(tmp))


def read_index_file(path: Path) -> Any:
    """`faiss.read_index`, whole into memory."""
    return import_faiss().read_index(str(path))


def record_path(shard_path: Path) -> Path:
    """The shard's completion record: `shard-00003.index` -> `shard-00003.json`."""
    return Path(shard_path).with_suffix(".json")


def fill_shard(trained_path: Path, vectors: np.ndarray, start: int, out_path: Path) -> ShardInfo:
    """The trained index at `trained_path` filled with `vectors` as global ids start..start+len-1, written atomically
    to `out_path`, then its completion record. IVF lists store the ids (`add_with_ids`); flat codes store none, so
    their positions come back by concatenating the shards in order (`merge_shards` checks the order)."""
    faiss = import_faiss()
    trained_path, out_path = Path(trained_path), Path(out_path)
    data = trained_path.read_bytes()
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if index.ntotal != 0:
        raise ValueError(f"{trained_path} is not an empty trained index ({index.ntotal} vectors)")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0 or vectors.shape[1] != index.d:
        raise ValueError(f"a shard needs a non-empty (n, {index.d}) array of vectors, got shape {vectors.shape}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    kind = merge_kind(index)
    if kind == "ondisk":
        index.add_with_ids(vectors, np.arange(start, start + len(vectors), dtype=np.int64))
    else:
        index.add(vectors)
    record_path(out_path).unlink(missing_ok=True)  # a record only ever describes the file beside it
    write_index_file(index, out_path)
    info = ShardInfo(
        start=int(start),
        count=len(vectors),
        ntotal=int(index.ntotal),
        dim=int(index.d),
        kind=kind,
        index_type=type(faiss.downcast_index(index)).__name__,
        index_bytes=out_path.stat().st_size,
        trained_sha256=hashlib.sha256(data).hexdigest(),
    )
    write_json_atomic(record_path(out_path), asdict(info))
    return info


def read_shard_info(shard_path: Path) -> ShardInfo | None:
    """The shard's completion record, or None when it is missing or not a complete record."""
    try:
        record = json.loads(record_path(shard_path).read_text(encoding="utf-8"))
        return ShardInfo(**{f.name: record[f.name] for f in fields(ShardInfo)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shard_is_complete(shard_path: Path, start: int, count: int, trained_path: Path | None = None) -> bool:
    """True when the shard's record exists and describes this range, the index file has the recorded size, and (given
    `trained_path`) the shard was filled from that very trained index. Pass `trained_path` whenever training may have
    run again: OPQ training differs with the OpenMP thread count, and a shard filled from other centroids would be
    merged under the wrong ones."""
    info = read_shard_info(shard_path)
    try:
        return (
            info is not None
            and (info.start, info.count, info.ntotal) == (start, count, count)
            and Path(shard_path).stat().st_size == info.index_bytes
            and (trained_path is None or info.trained_sha256 == file_sha256(trained_path))
        )
    except OSError:
        return False


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size, mtime and inode stay the same (a resume checks every shard)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def merge_shards(
    trained_path: Path,
    shard_paths: Sequence[Path],
    ivfdata_path: Path | None = None,
    *,
    out_index_path: Path | None = None,
) -> Any:
    """The trained index with every shard's vectors, each at its global position; also written to `out_index_path`
    when given. IVF ("ondisk"): the lists go to `ivfdata_path`, an `OnDiskInvertedLists` file the index reads through
    a memory map; flat codes ("in_memory"): concatenated in order. The shards must be complete, contiguous from 0,
    and filled from this trained index."""
    faiss = import_faiss()
    trained_path = Path(trained_path)
    index = read_index_file(trained_path)
    kind = merge_kind(index)
    if kind == "driver":
        raise ValueError(
            f"{type(faiss.downcast_index(index)).__name__} cannot be merged from shards (kinds that can: ondisk, "
            "in_memory): HNSW links vectors across shards and ,RFlat / IDMap keep a second store, so fill it in one "
            "process"
        )
    total = _check_shards(trained_path, [Path(p) for p in shard_paths])
    if kind == "ondisk":
        if ivfdata_path is None:
            raise ValueError("an IVF index merges its lists into a file: give ivfdata_path")
        _merge_lists_on_disk(index, [Path(p) for p in shard_paths], Path(ivfdata_path))
    else:
        for path in shard_paths:  # read whole: merge_from empties the shard, which a memory-mapped one cannot be
            index.merge_from(read_index_file(path), 0)
    if index.ntotal != total:
        raise ValueError(f"merged {index.ntotal} vectors but the shard records hold {total}")
    if out_index_path is not None:
        write_index_file(index, Path(out_index_path))
    return index


def _check_shards(trained_path: Path, shard_paths: list[Path]) -> int:
    """Raise ValueError unless every shard is complete, they follow each other from 0, and all were filled from
    `trained_path`; returns the vector count."""
    if not shard_paths:
        raise ValueError("no shards to merge")
    digest, expected = file_sha256(trained_path), 0
    for path in shard_paths:
        info = read_shard_info(path)
        if info is None or not shard_is_complete(path, info.start, info.count):
            raise ValueError(f"{path} is not a complete shard (its record is missing or does not match); refill it")
        if info.start != expected:
            raise ValueError(f"{path} starts at {info.start}, expected {expected}: shards must be contiguous, in order")
        if info.trained_sha256 != digest:
            raise ValueError(f"{path} was filled from another trained index than {trained_path}; refill it")
        expected += info.count
    return expected


def _merge_lists_on_disk(index: Any, shard_paths: list[Path], ivfdata_path: Path) -> None:
    """`faiss.contrib.ondisk.merge_ondisk`, plus two things it lacks: the lists file is written under a temporary
    name and renamed when complete (a reader never finds half a file, and an old file of that name, perhaps linked
    into a published index directory, is never truncated in place), and the shards' maps are released afterwards
    (merge_ondisk disowns them, so every shard file stays mapped, and its disk space held, until the process ends)."""
    faiss = import_faiss()
    ivf = faiss.extract_index_ivf(index)
    if index.ntotal != 0:
        raise ValueError(f"the trained index already holds {index.ntotal} vectors")
    shards = [faiss.read_index(str(path), faiss.IO_FLAG_MMAP) for path in shard_paths]  # lists mapped, not read
    lists = faiss.InvertedListsPtrVector()
    for shard in shards:
        lists.push_back(faiss.extract_index_ivf(shard).invlists)
    with atomic_path(ivfdata_path) as tmp:
        tmp.unlink()  # OnDiskInvertedLists creates the file itself
        on_disk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(tmp))
        ntotal = on_disk.merge_from_multiple(lists.data(), lists.size(), False)  # ids stay the shards' global ids
        index.ntotal = ivf.ntotal = ntotal
        ivf.replace_invlists(on_disk, True)
        on_disk.this.disown()  # the index owns it now
    on_disk = faiss.downcast_InvertedLists(ivf.invlists)
    on_disk.filename = str(ivfdata_path)  # what write_index records: the name the file has from now on
    del lists, shards  # unmaps the shard files
