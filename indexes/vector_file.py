"""The full-precision vectors of an index, in their own file, for exact rescoring of candidates from disk.

The file is a standard `.npy` array of shape (ntotal, dim), float16 (the default) or float32, row i being the vector
stored at position i. It is written in chunks (never a second copy in RAM) and read through a read-only memory map:
a rescore reads only its candidates' rows, so the pages the process holds grow with the queries, not with N, and
the kernel may drop them at will (they are clean, file-backed pages). The map is advised MADV_RANDOM: a page fault
reads its page, not the device's read-ahead window around it (megabytes on some disks), so a query whose rows are
not cached reads about one page per candidate, one fault at a time. `prefetch` asks for all of a query's pages at
once first (one MADV_WILLNEED call per page), which overlaps those reads when the pages are on disk and costs the
calls when they are cached (figures in benchmarks/scale/): off by default, for a file that fits the page cache.
"""

from __future__ import annotations

import functools
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VECTORS_FILE = "vectors.npy"
VECTOR_DTYPES = {"fp16": np.float16, "fp32": np.float32}
DEFAULT_VECTOR_DTYPE = "fp16"
NO_VECTORS = "none"
WRITE_CHUNK = 65_536  # rows converted and written at a time


@functools.cache
def fp16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern (256 KiB, built once)."""
    return np.arange(65_536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def as_float32(rows: np.ndarray) -> np.ndarray:
    """`rows` as float32; fp16 widened through `fp16_table` (exactly numpy's conversion, about twice as fast)."""
    if rows.dtype == np.float16:
        return fp16_table().take(rows.view(np.uint16))
    return rows.astype(np.float32)


class VectorFileError(ValueError):
    """The vector file is missing, short, or not the array the index expects."""


def check_vector_dtype(name: str) -> str:
    """Return `name` if it is a vector-file precision (fp16, fp32) or `none`; raise naming the allowed values."""
    if name not in (*VECTOR_DTYPES, NO_VECTORS):
        raise ValueError(f"unknown vector precision {name!r}: use one of {', '.join((*VECTOR_DTYPES, NO_VECTORS))}")
    return name


def write_vectors(path: Path | str, vectors: np.ndarray, dtype: str = DEFAULT_VECTOR_DTYPE) -> int:
    """Write `vectors` (n, d) to a new .npy file at `path` as `dtype`, WRITE_CHUNK rows at a time; return its size.

    The caller makes the write atomic (a temporary path, or a staged index directory)."""
    if vectors.ndim != 2:
        raise ValueError(f"need a 2-D array of vectors, got shape {vectors.shape}")
    return write_vector_rows(path, vectors.shape, lambda start, stop: vectors[start:stop], dtype)


def write_vector_rows(
    path: Path | str, shape: tuple[int, int], rows: Callable[[int, int], np.ndarray], dtype: str = DEFAULT_VECTOR_DTYPE
) -> int:
    """Write a new .npy file of `shape` whose rows [start, stop) are `rows(start, stop)`, asked WRITE_CHUNK rows at a
    time (never the whole array in RAM); return its size. The caller makes the write atomic."""
    check_vector_dtype(dtype)
    if dtype == NO_VECTORS:
        raise ValueError("write_vectors needs a precision (fp16 or fp32), not 'none'")
    out = np.lib.format.open_memmap(Path(path), mode="w+", dtype=VECTOR_DTYPES[dtype], shape=tuple(shape))
    try:
        for start in range(0, shape[0], WRITE_CHUNK):
            out[start : start + WRITE_CHUNK] = rows(start, min(start + WRITE_CHUNK, shape[0]))
        out.flush()
    finally:
        out._mmap.close()  # type: ignore[attr-defined]  # release the map now, not when the array is collected
    return Path(path).stat().st_size


@dataclass(frozen=True, eq=False)
class VectorFile:
    """A read-only, memory-mapped vector file: `rows(positions)` returns those rows as float32."""

    path: Path
    array: np.ndarray  # np.memmap of shape (ntotal, dim)
    prefetch: bool = False  # request every page of a query's rows before reading them (for files mostly on disk)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plain", self.array.view(np.ndarray))  # the same pages, without memmap's overhead

    @property
    def dtype_name(self) -> str:
        return next(name for name, kind in VECTOR_DTYPES.items() if np.dtype(kind) == self.array.dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape  # type: ignore[return-value]

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Rows at `positions` (sorted, unique positions read the file in order), as float32 (`as_float32`)."""
        if self.prefetch:
            self._prefetch(positions)
        return as_float32(self._plain.take(positions, axis=0))

    def _prefetch(self, positions: np.ndarray) -> None:
        """Ask the kernel for every page the rows span at once (MADV_WILLNEED), so the reads of uncached rows are
        issued together rather than one page fault at a time."""
        raw = getattr(self.array, "_mmap", None)
        if raw is None or len(positions) < 2 or not hasattr(mmap, "MADV_WILLNEED"):
            return
        row_bytes = self.array.shape[1] * self.array.dtype.itemsize
        starts = self.array.offset + np.asarray(positions, dtype=np.int64) * row_bytes
        pages = np.unique(np.concatenate([starts, starts + row_bytes - 1]) // mmap.PAGESIZE)
        for page in pages.tolist():
            raw.madvise(mmap.MADV_WILLNEED, page * mmap.PAGESIZE, mmap.PAGESIZE)

    def evict(self) -> None:
        """Drop this file's pages from this process (MADV_DONTNEED) and ask the kernel to drop them from its page
        cache (POSIX_FADV_DONTNEED), so the next reads come from disk. For measurement; a no-op where either call
        is missing."""
        raw = getattr(self.array, "_mmap", None)
        if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
            raw.madvise(mmap.MADV_DONTNEED)
        if hasattr(os, "posix_fadvise"):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def open_vectors(
    path: Path | str, ntotal: int, dim: int, dtype: str | None = None, prefetch: bool = False
) -> VectorFile:
    """Map the vector file at `path` read-only after checking it holds (ntotal, dim) rows of a known precision (and
    of `dtype`, when given); raise VectorFileError naming what is wrong. A short file is refused here: reading past
    its end through the map would kill the process (SIGBUS)."""
    path = Path(path)
    if not path.is_file():
        raise VectorFileError(f"{path} is missing (the full-precision vectors for rescoring)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise VectorFileError(f"{path} is not a readable vector file (truncated or corrupt: {err})") from err
    kinds = {np.dtype(kind): name for name, kind in VECTOR_DTYPES.items()}
    if array.dtype not in kinds or array.shape != (ntotal, dim) or not isinstance(array, np.memmap):
        raise VectorFileError(
            f"{path} holds a {array.dtype} array of shape {array.shape}; the index needs {dtype or 'fp16 or fp32'} "
            f"rows of shape ({ntotal}, {dim})"
        )
    if dtype is not None and kinds[array.dtype] != dtype:
        raise VectorFileError(f"{path} holds {kinds[array.dtype]} vectors but meta.json says {dtype}")
    raw = getattr(array, "_mmap", None)
    if raw is not None and hasattr(mmap, "MADV_RANDOM"):
        raw.madvise(mmap.MADV_RANDOM)  # rescoring reads scattered rows: no read-ahead around each page fault
    return VectorFile(path, array, prefetch)
