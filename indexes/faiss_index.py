"""FAISS indexes from factory strings, inner product on unit vectors, seeded training, search parameters.

Vectors get positional int64 ids (row i of the corpus is id i); `indexes.ids.DocIdMap` maps them to
string document ids. No IDMap wrapper is needed, so a Flat index stores no ids at all.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexes.vector_file import DEFAULT_VECTOR_DTYPE, NO_VECTORS, check_vector_dtype
from semsearch_common.errors import MissingDependencyError

logger = logging.getLogger(__name__)

SUPPORTED_FACTORIES = (
    "Flat",
    "HNSW{M}",
    "HNSW{M},{SQ}",
    "IVF{nlist},Flat",
    "IVF{nlist},PQ{m}",
    "IVF{nlist},PQ{m}x4fs",
    "IVF{nlist},PQ{m}x4fsr",
    "IVF{nlist},{SQ}",
    "IVF{nlist},{RaBitQ}",
    "OPQ{m},IVF{nlist},PQ{m}",
    "PQ{m}",
    "PQ{m}x4fs",
    "{SQ}",
    "{RaBitQ}",
    "IVF{nlist}_HNSW{M},... (IVF with an HNSW coarse quantizer, for large nlist) wherever IVF{nlist} is",
    "any of the above (except Flat) followed by ,RFlat",
    "where {SQ} is SQ4, SQ6, SQ8, SQfp16 or SQbf16 and {RaBitQ} is RaBitQ or RaBitQfs (1-bit codes; fs: fast-scan), "
    "optionally with 2-8 bits: RaBitQ4, RaBitQfs4",
)
_SQ = r"SQ(?:4|6|8|fp16|bf16)"
_RABITQ = r"RaBitQ(?:fs)?[2-8]?"
_PQ = r"PQ\d+(?:x\d+)?"
_PQFS = r"PQ\d+x4fs"
_IVF = r"IVF\d+(?:_HNSW\d+)?"
_CORE = (
    rf"(?:Flat|HNSW\d+(?:,Flat|,{_SQ})?|{_IVF},(?:Flat|{_PQ}|{_PQFS}r?|{_SQ}|{_RABITQ})|OPQ\d+(?:_\d+)?,{_IVF},{_PQ}"
    rf"|{_PQ}|{_PQFS}|{_SQ}|{_RABITQ})"
)
_FACTORY = re.compile(rf"^{_CORE}(?:,RFlat)?$")
# public search-parameter name -> the names faiss.ParameterSpace may use for it (qb: RaBitQ's query bits, set on
# the RaBitQ index itself, which ParameterSpace does not reach)
SEARCH_PARAMS = {
    "nprobe": ("nprobe",),
    "efSearch": ("efSearch",),
    "quantizer_efSearch": ("quantizer_efSearch",),
    "k_factor": ("k_factor_rf", "k_factor"),
    "qb": ("qb",),
    "oversample": (),  # rescoring from the vector file (`indexes.rescore`): not a FAISS parameter
}
RESCORE_PARAM = "oversample"
DEFAULT_OVERSAMPLE = 4  # candidates per hit rescored from the vector file, for indexes whose codes are lossy
RABITQ_QUERY_BITS = 8  # RaBitQ's default query quantisation here: 8 bits (FAISS: 4 for RaBitQ, 8 for RaBitQfs)
DEFAULT_TRAIN_SAMPLE = 100_000
MIN_POINTS_PER_LIST = 39  # faiss warns below 39 training points per k-means centroid
# OpenMP threads for a search of one query. FAISS parallelises over queries, so a second thread has nothing to do
# for one query, yet some indexes (SQ8, PQ) still open a parallel region and wait for its whole team, which costs
# milliseconds per query beside other busy threads (benchmarks/latency/). Batches keep the default team.
SINGLE_QUERY_THREADS = 1


def import_faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - core dependency
        raise MissingDependencyError("indexes need FAISS: `pip install faiss-cpu`") from err
    return faiss


def validate_factory(factory: str, dim: int) -> None:
    """Raise ValueError unless `factory` is a supported form that fits vectors of `dim` dimensions."""
    if not _FACTORY.match(factory) or factory == "Flat,RFlat":
        raise ValueError(f"unsupported index factory {factory!r}; supported forms: {'; '.join(SUPPORTED_FACTORIES)}")
    for m in re.findall(r"(?:^|,)(?:OPQ|PQ)(\d+)", factory):
        if int(m) < 1 or dim % int(m) != 0:
            raise ValueError(f"index factory {factory!r}: PQ/OPQ size {m} must divide the vector dimension {dim}")
    for nlist in re.findall(r"IVF(\d+)", factory):
        if int(nlist) < 1:
            raise ValueError(f"index factory {factory!r}: IVF list count must be >= 1")


def default_nlist(n: int) -> int:
    """IVF lists for `n` vectors: the power of two nearest 4*sqrt(n), lowered until every list has >= 39 training
    points (10k: 256, 100k: 1024, 1M: 4096)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and n / nlist < MIN_POINTS_PER_LIST:
        nlist //= 2
    return nlist


def lossy_codes(factory: str) -> bool:
    """Whether the index scores with approximate codes and re-ranks nothing itself: every form but full-precision
    storage (Flat, HNSW{M}[,Flat], IVF{n},Flat) and `,RFlat` refinement."""
    return not (factory.endswith(",RFlat") or re.fullmatch(rf"Flat|HNSW\d+(?:,Flat)?|{_IVF},Flat", factory))


def default_search_params(factory: str, vector_file: bool = False) -> dict[str, float]:
    """Search-time defaults: nprobe = nlist/16 (at least 1), efSearch 64 (HNSW; the coarse quantizer's
    quantizer_efSearch for IVF{n}_HNSW{M}), k_factor 4 for refinement, qb 8 for RaBitQ, and, where a vector file
    is stored beside lossy codes (`vector_file`), oversample 4."""
    params: dict[str, float] = {}
    if match := re.search(r"IVF(\d+)", factory):
        params["nprobe"] = max(1, int(match.group(1)) // 16)
    if re.match(r"HNSW\d+", factory):
        params["efSearch"] = 64
    if re.search(r"IVF\d+_HNSW\d+", factory):
        params["quantizer_efSearch"] = 64
    if factory.endswith(",RFlat"):
        params["k_factor"] = 4
    if "RaBitQ" in factory:
        params["qb"] = RABITQ_QUERY_BITS
    if vector_file and lossy_codes(factory):
        params[RESCORE_PARAM] = DEFAULT_OVERSAMPLE
    return params


def check_oversample(factory: str, vector_file: bool) -> None:
    """Raise ValueError unless `oversample` can apply: a vector file is kept and the index is not `,RFlat`."""
    if factory.endswith(",RFlat"):
        raise ValueError(
            f"search parameter oversample does not apply to {factory!r}: it re-ranks from RAM with k_factor; "
            "drop ,RFlat to rescore from the vector file"
        )
    if not vector_file:
        raise ValueError(
            "search parameter oversample needs the full-precision vector file, which this index does not keep "
            "(built with --vectors none); rebuild it with --vectors fp16 or drop oversample"
        )


def split_rescore_params(params: Mapping[str, float]) -> tuple[dict[str, float], float | None]:
    """(the parameters FAISS sets, `oversample` or None)."""
    faiss_params = {name: value for name, value in params.items() if name != RESCORE_PARAM}
    oversample = params.get(RESCORE_PARAM)
    return faiss_params, None if oversample is None else float(oversample)


def parse_search_params(text: str) -> dict[str, float]:
    """Parse `nprobe=16,efSearch=64,k_factor=4` into a dict, naming the allowed keys on error."""
    params: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in SEARCH_PARAMS:
            raise ValueError(f"bad search parameter {item!r}: use NAME=VALUE with NAME in {', '.join(SEARCH_PARAMS)}")
        try:
            number = float(value)
        except ValueError as err:
            raise ValueError(f"search parameter {name} needs a number, got {value!r}") from err
        if number < 1:
            raise ValueError(f"search parameter {name} must be >= 1, got {value}")
        if name == "qb" and (number > 8 or not number.is_integer()):
            raise ValueError(f"search parameter qb (RaBitQ's query bits) must be an integer 1..8, got {value}")
        params[name] = number
    return params


def without_id_map(index) -> Any:
    """The index inside an `IndexIDMap`/`IndexIDMap2` (a living index's compaction wraps flat codes and HNSW in one
    so that positions stay their ids), else `index`. FAISS's ParameterSpace does not reach through the wrapper."""
    faiss = import_faiss()
    node = faiss.downcast_index(index)
    return faiss.downcast_index(node.index) if isinstance(node, faiss.IndexIDMap | faiss.IndexIDMap2) else node


def rabitq_index(index) -> Any | None:
    """The RaBitQ index inside `index` (itself, the base of an `,RFlat` refinement, or inside an ID map), or None."""
    faiss = import_faiss()
    node = without_id_map(index)
    while node is not None:
        if "RaBitQ" in type(node).__name__:
            return node
        inner = getattr(node, "base_index", None)
        node = faiss.downcast_index(inner) if inner is not None else None
    return None


def _native_params(index) -> tuple[Any, set[str]]:
    faiss = import_faiss()
    index = without_id_map(index)
    space = faiss.ParameterSpace()
    space.initialize(index)
    native = {space.parameter_ranges.at(i).name for i in range(space.parameter_ranges.size())}
    if rabitq_index(index) is not None:
        native.add("qb")
    return space, native


def settable_params(index) -> list[str]:
    """The public FAISS search-parameter names this index accepts (`oversample` depends on the index directory)."""
    _, native = _native_params(index)
    return [public for public, names in SEARCH_PARAMS.items() if native.intersection(names)]


def apply_search_params(index, params: Mapping[str, float]) -> None:
    """Set search-time parameters through faiss.ParameterSpace (it reaches through wrappers); RaBitQ's `qb` on the
    RaBitQ index itself. `oversample` is skipped: it belongs to the rescoring stage (`indexes.rescore`), which the
    caller sets up (`split_rescore_params`)."""
    index = without_id_map(index)
    space, native = _native_params(index)
    allowed = settable_params(index)
    for public, value in split_rescore_params(params)[0].items():
        names = [n for n in SEARCH_PARAMS.get(public, ()) if n in native]
        if not names:
            raise ValueError(
                f"search parameter {public!r} does not apply to this index; it accepts: {', '.join(allowed) or 'none'}"
            )
        if public == "qb":
            rabitq_index(index).qb = int(value)
        else:
            space.set_index_parameter(index, names[0], float(value))


@dataclass(frozen=True)
class IndexSpec:
    """What to build: a factory string, how much to train on, the seed, and default search parameters."""

    factory: str = "Flat"
    train_sample: int = DEFAULT_TRAIN_SAMPLE
    seed: int = 0
    search_params: Mapping[str, float] = field(default_factory=dict)
    vectors: str = DEFAULT_VECTOR_DTYPE  # precision of the vector file kept for rescoring, or "none"

    def __post_init__(self) -> None:
        check_vector_dtype(self.vectors)

    def resolved_search_params(self) -> dict[str, float]:
        """The defaults for this factory (and vector file), overridden by `search_params`; `oversample` needs a
        vector file and codes that are not already exact or re-ranked."""
        params = {**default_search_params(self.factory, self.vectors != NO_VECTORS), **dict(self.search_params)}
        if RESCORE_PARAM in params:
            check_oversample(self.factory, self.vectors != NO_VECTORS)
        return params


@dataclass(frozen=True)
class BuiltIndex:
    index: object
    train_seconds: float
    add_seconds: float


def train_index(
    vectors: np.ndarray, spec: IndexSpec, on_progress: Callable[[str, int, int], None] | None = None
) -> tuple[Any, float]:
    """The inner-product index of `spec`, trained on a seeded sample of `vectors` and still empty; and the seconds
    training took. Local and sharded builds train through here, so both start from the same trained index."""
    faiss = import_faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"need a non-empty 2-D array of vectors, got shape {vectors.shape}")
    dim = vectors.shape[1]
    validate_factory(spec.factory, dim)
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    if not index.is_trained:
        rng = np.random.default_rng(spec.seed)
        size = min(len(vectors), spec.train_sample)
        sample = (
            vectors[np.sort(rng.choice(len(vectors), size=size, replace=False))] if size < len(vectors) else vectors
        )
        logger.info("training %s on %d vectors", spec.factory, len(sample))
        if on_progress:
            on_progress("train", 0, len(sample))
        _seed_clustering(index, spec.seed)
        _skip_polysemous_training(index)
        try:
            index.train(sample)
        except RuntimeError as err:
            raise ValueError(f"cannot train {spec.factory!r} on {len(sample)} vectors: {_faiss_reason(err)}") from err
    return index, time.perf_counter() - started


def build_index(
    vectors: np.ndarray,
    spec: IndexSpec,
    on_progress: Callable[[str, int, int], None] | None = None,
    add_chunk: int = 16_384,
) -> BuiltIndex:
    """Train (on a seeded sample) and fill an inner-product index.

    `on_progress(stage, done, total)` reports `("train", 0, n_train)` before training and `("add", done, n)` after
    each chunk of vectors is added.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index, train_seconds = train_index(vectors, spec, on_progress)
    started = time.perf_counter()
    for start in range(0, len(vectors), add_chunk):
        index.add(vectors[start : start + add_chunk])
        if on_progress:
            on_progress("add", min(start + add_chunk, len(vectors)), len(vectors))
    apply_search_params(index, spec.resolved_search_params())
    return BuiltIndex(index, train_seconds, time.perf_counter() - started)


def _faiss_reason(err: RuntimeError) -> str:
    """The human part of a FAISS C++ exception ("Error in ... failed: <reason>")."""
    text = str(err).strip()
    return text.split("failed: ", 1)[-1] if "failed: " in text else text.splitlines()[-1]


def _skip_polysemous_training(index) -> None:
    """PQ indexes from the factory also train polysemous codes (for Hamming filtering, which we never use);
    on SciFact that is ~38 of the ~42 s an IVF256,PQ48 build takes, so switch it off."""
    faiss = import_faiss()
    node = faiss.downcast_index(index)
    while node is not None:
        if hasattr(node, "do_polysemous_training"):
            node.do_polysemous_training = False
        inner = getattr(node, "index", None) or getattr(node, "base_index", None)
        node = faiss.downcast_index(inner) if inner is not None else None


def _seed_clustering(index, seed: int) -> None:
    """Make k-means in IVF training follow our seed (faiss defaults to a fixed 1234)."""
    faiss = import_faiss()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    ivf.cp.seed = 1234 + seed


@contextmanager
def openmp_threads(threads: int | None) -> Iterator[int]:
    """Cap FAISS's OpenMP team for calls made by *this thread* inside the block at `threads`, then restore it.

    libgomp keeps the thread count per calling thread: `omp_set_num_threads` (and threadpoolctl, which calls it) in
    the main thread does not reach a server's worker threads, each of which starts with the process default and
    gets its own team. So the cap is set around each call, in the thread that searches (two calls, under a
    microsecond). None, or a cap at or above the current count, changes nothing. Yields the count in force.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    if threads is None or threads >= before:
        yield before
        return
    faiss.omp_set_num_threads(threads)
    try:
        yield threads
    finally:
        faiss.omp_set_num_threads(before)


def search_threads(n_queries: int, single_query_threads: int | None = SINGLE_QUERY_THREADS) -> int | None:
    """The OpenMP cap for a search of `n_queries`: `single_query_threads` for one query, none for batches."""
    return single_query_threads if n_queries == 1 else None


def search_index(
    index, queries: np.ndarray, k: int, single_query_threads: int | None = SINGLE_QUERY_THREADS, params: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search; returns (scores, positions), position -1 where fewer than k exist.

    A single query runs on `single_query_threads` OpenMP threads (None: the calling thread's default team); `params`
    are FAISS search parameters (an IDSelector, nprobe, efSearch) for this call."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if single_query_threads is not None and single_query_threads < 1:
        raise ValueError(f"single_query_threads must be >= 1 or None, got {single_query_threads}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(f"queries must have shape (n, {index.d}), got {queries.shape}")
    with openmp_threads(search_threads(len(queries), single_query_threads)):
        return index.search(queries, k) if params is None else index.search(queries, k, params=params)


def serialized_size(index) -> int:
    return int(import_faiss().serialize_index(index).size)


def bytes_per_vector(index) -> float:
    """Marginal bytes per stored vector: (size with vectors - size of the same index emptied) / ntotal."""
    faiss = import_faiss()
    if index.ntotal == 0:
        return 0.0
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists):
        # lists in a file (merged from shards): not serialized or cloned; each vector stores its code and an int64 id
        return float(ivf.code_size + np.dtype(np.int64).itemsize)
    serialized = faiss.serialize_index(index)
    empty = faiss.deserialize_index(serialized)  # a copy (clone_index does not know every type, e.g. RaBitQfs)
    empty.reset()
    return (int(serialized.size) - serialized_size(empty)) / index.ntotal
