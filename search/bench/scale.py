"""`semsearch bench-scale`: search latency per query, recall@10 and memory against corpus size N.

SciFact has ~5k documents, far too few to show how indexes scale, so the corpus is grown synthetically from real
embeddings by one of two generators:

- "mix" (default): each vector is `normalise(normalise(sum_k w_k source[i_k]) + noise)`, where i_1 is a random
  source, the other one or two sources are random among i_1's nearest real neighbours, and the Dirichlet weights are
  sorted so i_1 (the "dominant" source) gets the largest. Every vector is a new point between related documents,
  so a large corpus is not made of clumps of copies.
- "noise": row i is `normalise(source[i % n] + noise)`, a noisy copy of one source. From ~20 copies per source
  the exact top-10 of a query is almost all copies of its own source (clumps of near-ties).

The Gaussian noise is shaped by the source embeddings' own covariance (mode "data") or isotropic (mode
"isotropic"), scaled so a vector keeps a chosen mean cosine to its noise-free point. Queries come from the same
generator with another seed stream. Random draws are made in fixed chunks from per-chunk seeds, so the N=10k corpus
is exactly the first 10k rows of the N=1M corpus and the curve compares nested corpora. Ground truth is exact
blockwise inner-product top-k (`indexes.exact`).
"""

from __future__ import annotations

import csv
import ctypes
import gc
import io
import logging
import math
import platform
import re
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path, write_json_atomic, write_text_atomic
from indexes.exact import exact_search
from indexes.faiss_index import (
    IndexSpec,
    build_index,
    bytes_per_vector,
    default_search_params,
    search_index,
    serialized_size,
    validate_factory,
)
from search.bench.compression import machine_info
from search.evaluation.metrics import knn_recall, percentile_ms

logger = logging.getLogger(__name__)

DEFAULT_INDEXES = ("Flat", "IVF{nlist},PQ{m}", "IVF{nlist},PQ{m},RFlat", "HNSW32")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
NOISE_MODES = ("data", "isotropic")
GENERATORS = ("mix", "noise")
# noise level per generator, chosen so the synthetic neighbour-score profile tracks the real one (see scale.md)
DEFAULT_TARGET_COSINE = {"mix": 0.87, "noise": 0.85}
MIX_NEIGHBOURS = 50  # partners of a mix are drawn among the dominant source's 50 nearest real neighbours
MIX_ALPHA = 1.0  # Dirichlet concentration of the mixing weights (1: uniform over the simplex)
MIX_MAX_PARTNERS = 2  # each mix has 1 or 2 partners besides its dominant source, with equal odds
PROFILE_QUERIES = 1000  # real embeddings held out as queries for the real neighbour-score profile
MIN_SIZE = 10
MIN_POINTS_PER_LIST = 39  # faiss warns below 39 training points per k-means centroid
GEN_CHUNK = 65_536  # rows per noise chunk; fixed so smaller corpora are prefixes of larger ones
BASE_STREAM, QUERY_STREAM, PROFILE_STREAM = 1, 2, 3
LATENCY_WARMUP = 10
FILES = ("scale.json", "scale.csv", "scale.md", "scale_latency.png", "scale_recall.png")


@dataclass(frozen=True)
class ScaleBenchSpec:
    """What to measure: the source embeddings, the corpus sizes, the index factories and how to time them.

    Factories may hold `{nlist}` (see `default_nlist`) and `{m}` (PQ bytes, `pq_m` or dim/8). `search_params` override
    the defaults (nprobe = nlist/16, efSearch 64, k_factor 4) for the indexes they apply to. `skip` holds
    `FACTORY@N` pairs (the factory as given or as resolved) that are not run. `generator` is "mix" or "noise" (see
    the module docstring); `target_cosine` None means the generator's default (`DEFAULT_TARGET_COSINE`).
    """

    vectors: Path
    sizes: tuple[int, ...] = DEFAULT_SIZES
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    queries: int = 1000
    latency_queries: int = 200
    repeats: int = 2
    k: int = 10
    threads: int = 1
    generator: str = "mix"
    target_cosine: float | None = None
    noise: str = "data"
    mix_neighbours: int = MIX_NEIGHBOURS
    mix_alpha: float = MIX_ALPHA
    seed: int = 0
    train_sample: int = 200_000
    pq_m: int | None = None
    search_params: Mapping[str, float] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    note: str = ""


# ---------------------------------------------------------------- vectors


def load_source_vectors(path: Path | str) -> np.ndarray:
    """Load a (n, d) .npy of embeddings as float32 unit vectors (rows are re-normalised)."""
    path = Path(path).expanduser()
    if path.suffix != ".npy":
        raise ValueError(f"--vectors must be a .npy file of shape (n, dim), got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"vectors file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read {path} as a .npy array: {err}") from err
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{path} must hold a numeric (n >= 2, dim >= 2) array, got {array.dtype} {array.shape}")
    array = np.asarray(array, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(array)) or np.any(norms == 0):
        raise ValueError(f"{path} has non-finite or all-zero rows: cannot normalise")
    return np.ascontiguousarray(array / norms)


def noise_transform(source: np.ndarray, mode: str, target_cosine: float) -> np.ndarray:
    """A (d, d) matrix T such that `z @ T` (z standard normal) is the noise to add to a unit source vector.

    E|noise|^2 = 1/c^2 - 1, so a noisy copy's cosine to its source is about c. Mode "data" gives the noise the
    covariance of the (centred) source vectors, so copies stay in the directions real embeddings occupy; mode
    "isotropic" spreads the same energy evenly over all dimensions.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {mode!r}: use one of {', '.join(NOISE_MODES)}")
    if not 0.0 < target_cosine < 1.0:
        raise ValueError(f"target cosine must be in (0, 1), got {target_cosine}")
    dim = source.shape[1]
    energy = 1.0 / target_cosine**2 - 1.0
    if mode == "isotropic":
        return (np.eye(dim) * math.sqrt(energy / dim)).astype(np.float32)
    centred = source.astype(np.float64) - source.mean(axis=0, dtype=np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(source))
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    if eigenvalues.sum() <= 0:
        raise ValueError("the source vectors have no spread (all rows identical): use --noise isotropic")
    scale = math.sqrt(energy / eigenvalues.sum())
    return ((eigenvectors * np.sqrt(eigenvalues)).T * scale).astype(np.float32)


def noisy_copies(
    source: np.ndarray, source_ids: np.ndarray, transform: np.ndarray, seed: int, stream: int
) -> np.ndarray:
    """Unit vectors `normalise(source[source_ids] + z @ transform)`, noise drawn chunk by chunk from seeds
    (seed, stream, chunk); the first m rows do not depend on how many rows are asked for."""
    out = np.empty((len(source_ids), source.shape[1]), dtype=np.float32)
    for chunk, start in enumerate(range(0, len(source_ids), GEN_CHUNK)):
        ids = source_ids[start : start + GEN_CHUNK]
        rng = np.random.default_rng([seed, stream, chunk])
        block = source[ids] + rng.standard_normal((len(ids), source.shape[1]), dtype=np.float32) @ transform
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(ids)] = block
    return out


def source_neighbours(source: np.ndarray, k: int) -> np.ndarray:
    """Each source's `k` nearest other sources by cosine (exact search once on the sources), best first."""
    k = min(k, len(source) - 1)
    _, ids = exact_search(source, source, k + 1)
    is_self = ids == np.arange(len(source))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # drop self wherever duplicates put it
    return np.take_along_axis(ids, order, axis=1)


def mixed_points(
    source: np.ndarray,
    neighbours: np.ndarray,
    transform: np.ndarray,
    alpha: float,
    count: int,
    seed: int,
    stream: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` unit vectors `normalise(m + z @ transform)`, m = normalise(sum_k w_k source[i_k]), and each one's
    dominant source i_1.

    i_1 is uniform over the sources; 1 or 2 partners (equal odds) are distinct random picks among i_1's rows of
    `neighbours`; weights are Dirichlet(alpha), sorted so i_1 gets the largest. Per-row choices are drawn for a whole
    chunk of GEN_CHUNK rows and then cut, and the noise is drawn last, so the first m rows do not depend on how
    many rows are asked for.
    """
    n_sources, dim = source.shape
    k = neighbours.shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    dominant = np.empty(count, dtype=np.int64)
    for chunk, start in enumerate(range(0, count, GEN_CHUNK)):
        rows = min(GEN_CHUNK, count - start)
        rng = np.random.default_rng([seed, stream, chunk])
        first = rng.integers(0, n_sources, GEN_CHUNK)[:rows]
        partners = rng.integers(1, MIX_MAX_PARTNERS + 1, GEN_CHUNK)[:rows]
        rank_a = rng.integers(0, k, GEN_CHUNK)[:rows]
        rank_b = rng.integers(0, max(k - 1, 1), GEN_CHUNK)[:rows]
        weights = rng.dirichlet(np.full(MIX_MAX_PARTNERS + 1, alpha), GEN_CHUNK)[:rows]
        if k > 1:
            rank_b = rank_b + (rank_b >= rank_a)  # a second neighbour distinct from the first
        ids = (first, neighbours[first, rank_a], neighbours[first, rank_b])
        weights[partners == 1, 2] = 0.0  # one partner: Dirichlet(alpha, alpha) over the first two
        weights = -np.sort(-weights, axis=1)
        weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
        block = source[ids[0]] * weights[:, :1]
        for column in (1, 2):
            block += source[ids[column]] * weights[:, column : column + 1]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block += rng.standard_normal((rows, dim), dtype=np.float32) @ transform
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block
        dominant[start : start + rows] = first
    return out, dominant


def base_source_ids(n: int, n_sources: int) -> np.ndarray:
    """Noise generator: corpus row i copies source i % n_sources."""
    return np.arange(n, dtype=np.int64) % n_sources


def query_source_ids(count: int, n_sources: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, QUERY_STREAM, 10**6]).integers(0, n_sources, size=count)


def resolve_target_cosine(generator: str, target_cosine: float | None) -> float:
    """The noise level: the given cosine, or the generator's default."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}: use one of {', '.join(GENERATORS)}")
    return DEFAULT_TARGET_COSINE[generator] if target_cosine is None else target_cosine


@dataclass(frozen=True, eq=False)
class VectorGenerator:
    """A seeded generator of synthetic corpus and query vectors grown from `source` (see the module docstring).

    `corpus(n)` and `queries(count)` return the vectors and each one's (dominant) source; corpus(m) is the first m
    rows of corpus(n) for m <= n.
    """

    kind: str
    source: np.ndarray
    transform: np.ndarray
    seed: int
    neighbours: np.ndarray | None = None
    alpha: float = MIX_ALPHA

    def corpus(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._make(n, BASE_STREAM)

    def queries(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        return self._make(count, QUERY_STREAM)

    def _make(self, count: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "mix":
            assert self.neighbours is not None
            return mixed_points(self.source, self.neighbours, self.transform, self.alpha, count, self.seed, stream)
        if stream == BASE_STREAM:
            ids = base_source_ids(count, len(self.source))
        else:
            ids = query_source_ids(count, len(self.source), self.seed)
        return noisy_copies(self.source, ids, self.transform, self.seed, stream), ids


def make_generator(
    source: np.ndarray,
    generator: str = "mix",
    noise: str = "data",
    target_cosine: float | None = None,
    seed: int = 0,
    mix_neighbours: int = MIX_NEIGHBOURS,
    mix_alpha: float = MIX_ALPHA,
) -> VectorGenerator:
    """Validate the recipe and precompute what it needs: the noise transform and, for "mix", the neighbour table."""
    cosine = resolve_target_cosine(generator, target_cosine)
    check_mix_params(mix_neighbours, mix_alpha)
    transform = noise_transform(source, noise, cosine)
    if generator == "noise":
        return VectorGenerator("noise", source, transform, seed)
    return VectorGenerator("mix", source, transform, seed, source_neighbours(source, mix_neighbours), mix_alpha)


def check_mix_params(mix_neighbours: int, mix_alpha: float) -> None:
    if mix_neighbours < 1:
        raise ValueError(f"mix neighbours must be >= 1, got {mix_neighbours}")
    if not (mix_alpha > 0 and math.isfinite(mix_alpha)):
        raise ValueError(f"mix alpha (Dirichlet concentration) must be a finite number > 0, got {mix_alpha}")


def make_vectors(
    source: np.ndarray, n: int, queries: int, mode: str = "data", target_cosine: float | None = None, seed: int = 0,
    generator: str = "mix",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The seeded corpus of n vectors, its (dominant) source ids, the queries and theirs."""
    maker = make_generator(source, generator, mode, target_cosine, seed)
    return (*maker.corpus(n), *maker.queries(queries))


def vector_stats(
    source: np.ndarray,
    base: np.ndarray,
    base_src: np.ndarray,
    queries: np.ndarray,
    query_src: np.ndarray,
    truth: np.ndarray,
) -> dict[str, float]:
    """How the synthetic vectors relate to the sources, and how much of the exact top-k shares the query's
    (dominant) source: 1.0 would make nearest-neighbour search a lookup of that source's clump."""
    sample = min(len(base), 100_000)
    base_cos = np.einsum("ij,ij->i", base[:sample], source[base_src[:sample]])
    query_cos = np.einsum("ij,ij->i", queries, source[query_src])
    nearest_base, _ = exact_search(base[: min(sample, 20_000)], source, 1)
    nearest_query, _ = exact_search(queries, source, 1)
    same_source = base_src[truth] == query_src[:, None]
    scores = np.einsum("ij,ikj->ik", queries, base[truth])
    return {
        "mean_cosine_to_source_corpus": float(base_cos.mean()),
        "std_cosine_to_source_corpus": float(base_cos.std()),
        "mean_cosine_to_source_queries": float(query_cos.mean()),
        "mean_cosine_to_nearest_source_corpus": float(nearest_base[:, 0].mean()),
        "mean_cosine_to_nearest_source_queries": float(nearest_query[:, 0].mean()),
        "same_source_fraction_of_exact_top_k": float(same_source.mean()),
        "mean_exact_top1_score": float(scores[:, 0].mean()),
        "mean_exact_topk_last_score": float(scores[:, -1].mean()),
    }


def source_neighbour_profile(source: np.ndarray, k: int) -> tuple[float, float]:
    """Mean cosine of each source to its nearest and its k-th nearest other source: the real data's own profile."""
    scores, ids = exact_search(source, source, k + 1)
    is_self = ids == np.arange(len(source))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)
    return float(scores[:, 0].mean()), float(scores[:, -1].mean())


def profile_sizes(n_sources: int, k: int) -> tuple[int, list[int]]:
    """How many real embeddings are held out as queries, and the real corpus sizes the profile is measured at."""
    held_out = min(PROFILE_QUERIES, n_sources // 2)
    pool = n_sources - held_out
    return held_out, sorted({m for m in (pool // 4, pool // 2, pool) if m >= k})


def real_profile(source: np.ndarray, k: int, seed: int) -> dict[int, tuple[float, float]]:
    """Mean top-1 and top-k scores of held-out real embeddings against real corpora of growing size, so the synthetic
    corpus can be compared with real data at the same N."""
    held_out, sizes = profile_sizes(len(source), k)
    order = np.random.default_rng([seed, PROFILE_STREAM]).permutation(len(source))
    queries, pool = source[order[:held_out]], source[order[held_out:]]
    return {m: _top1_topk(queries, pool[:m], k) for m in sizes}


def _top1_topk(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[float, float]:
    scores, _ = exact_search(queries, corpus, k)
    return float(scores[:, 0].mean()), float(scores[:, -1].mean())


# ---------------------------------------------------------------- indexes


def default_nlist(n: int) -> int:
    """The power of two nearest 4*sqrt(n), lowered until every list has >= 39 training points (10k: 256,
    100k: 1024, 1M: 4096)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and n / nlist < MIN_POINTS_PER_LIST:
        nlist //= 2
    return nlist


def resolve_factory(template: str, n: int, dim: int, pq_m: int | None = None) -> str:
    """Fill `{nlist}` and `{m}` in a factory template and validate the result for `dim`-d vectors."""
    m = pq_m if pq_m is not None else max(1, dim // 8)
    try:
        factory = template.format(nlist=default_nlist(n), m=m)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"bad index factory template {template!r} ({err}): the placeholders are {{nlist}} and {{m}}"
        ) from err
    validate_factory(factory, dim)
    return factory


def parse_skip(entries: Sequence[str]) -> list[tuple[str, int]]:
    pairs = []
    for entry in entries:
        factory, sep, size = entry.rpartition("@")
        if not sep or not factory or not size.strip().isdigit():
            raise ValueError(f"bad --skip {entry!r}: use FACTORY@N, e.g. HNSW32@1000000")
        pairs.append((factory.strip(), int(size)))
    return pairs


def parse_sizes(text: str) -> tuple[int, ...]:
    """Parse `10000,100000,1000000` (underscores allowed) into sizes."""
    try:
        sizes = tuple(int(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise ValueError(f"sizes must be comma-separated integers, e.g. 10000,100000, got {text!r}") from err
    if not sizes:
        raise ValueError(f"no sizes in {text!r}: pass e.g. 10000,100000")
    return sizes


def row_summary(row: Mapping[str, Any], k: int = 10) -> str:
    """One line per measured (index, N) for the CLI."""
    return (
        f"p50 {row['latency_ms_p50']:.3f} ms, recall@{k} {row[f'recall@{k}']:.4f}, "
        f"{row['bytes_per_vector']:.1f} B/vec, build {row['build_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB"
    )


def validate_spec(spec: ScaleBenchSpec, dim: int) -> None:
    """Reject bad sizes, counts and factories before any vector is generated."""
    if not spec.sizes:
        raise ValueError("no sizes given: pass e.g. --sizes 10000,100000")
    for n in spec.sizes:
        if n < max(MIN_SIZE, spec.k):
            raise ValueError(f"size {n} is too small: every N must be >= {max(MIN_SIZE, spec.k)}")
    for name, value in (("queries", spec.queries), ("latency queries", spec.latency_queries),
                        ("repeats", spec.repeats), ("k", spec.k), ("threads", spec.threads),
                        ("train sample", spec.train_sample)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if spec.latency_queries > spec.queries:
        raise ValueError(f"latency queries ({spec.latency_queries}) cannot exceed queries ({spec.queries})")
    if not spec.indexes:
        raise ValueError("no index factories given")
    cosine = resolve_target_cosine(spec.generator, spec.target_cosine)  # checks the generator
    noise_transform(np.eye(2, dtype=np.float32), spec.noise, cosine)  # checks mode and cosine
    check_mix_params(spec.mix_neighbours, spec.mix_alpha)
    known = set()
    for n in spec.sizes:
        for template in spec.indexes:
            factory = resolve_factory(template, n, dim, spec.pq_m)
            known |= {(template, n), (factory, n)}
            for nlist in (int(x) for x in re.findall(r"IVF(\d+)", factory)):
                if nlist > min(n, spec.train_sample):
                    raise ValueError(f"{factory} at N={n}: {nlist} lists need at least {nlist} training vectors")
    for pair in parse_skip(spec.skip):
        if pair not in known:
            raise ValueError(f"--skip {pair[0]}@{pair[1]} matches no run: factories {', '.join(spec.indexes)}; "
                             f"sizes {', '.join(map(str, spec.sizes))}")  # fmt: skip


def params_for(factory: str, overrides: Mapping[str, float]) -> dict[str, float]:
    """The default search parameters of `factory`, with the overrides that apply to it."""
    params = default_search_params(factory)
    params.update({key: value for key, value in overrides.items() if key in params})
    return params


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so getrusage reports the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc malloc_trim), so the RSS just before a
    build counts live data only, not what earlier rows' indexes left in the allocator."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_rss_mb() -> float | None:
    """Resident set size now (Linux /proc), or None where unavailable."""
    line = next((line for line in _read_lines("/proc/self/status") if line.startswith("VmRSS:")), None)
    return int(line.split()[1]) / 1024.0 if line else None


def latency_ms(index: Any, queries: np.ndarray, k: int, repeats: int) -> dict[str, float]:
    """Per-query latency at batch 1: each repeat times every query alone; the repeat with the lowest p50 wins."""
    for row in queries[:LATENCY_WARMUP]:
        search_index(index, row[None, :], k)
    best: list[float] | None = None
    for _ in range(repeats):
        samples = []
        for row in queries:
            started = time.perf_counter()
            search_index(index, row[None, :], k)
            samples.append(time.perf_counter() - started)
        if best is None or np.median(samples) < np.median(best):
            best = samples
    assert best is not None
    return {
        "latency_ms_p50": percentile_ms(best, 50),
        "latency_ms_p95": percentile_ms(best, 95),
        "latency_ms_mean": float(np.mean(best) * 1000.0),
    }


def measure(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, template: str, factory: str, spec: ScaleBenchSpec
) -> dict[str, Any]:
    """Build one index on `base`, then time it at batch 1 and score its top-k against the exact top-k."""
    release_freed_memory()
    before = current_rss_mb()
    scoped = reset_peak_rss()
    params = params_for(factory, spec.search_params)
    index_spec = IndexSpec(factory, train_sample=spec.train_sample, seed=spec.seed, search_params=params)
    started = time.perf_counter()
    built = build_index(base, index_spec)
    build_s = time.perf_counter() - started
    _, found = search_index(built.index, queries, spec.k)
    recall = knn_recall(found.tolist(), truth.tolist(), spec.k)
    timing = latency_ms(built.index, queries[: spec.latency_queries], spec.k, spec.repeats)
    peak = peak_rss_mb()
    row = {
        "n": len(base),
        "index": template,
        "factory": factory,
        "search_params": params,
        "build_s": build_s,
        "train_s": built.train_seconds,
        "add_s": built.add_seconds,
        f"recall@{spec.k}": recall,
        **timing,
        "peak_rss_mb": peak,
        "rss_before_build_mb": before,
        "peak_rss_added_mb": peak - before if scoped and before is not None else None,
        "peak_rss_scope": "this row" if scoped else "whole process so far",
        "bytes_per_vector": bytes_per_vector(built.index),
        "index_bytes": serialized_size(built.index),
    }
    logger.info("N=%d %s: build %.1fs, recall@%d %.4f, p50 %.3f ms, peak RSS %.0f MB", len(base), factory, build_s,
                spec.k, recall, timing["latency_ms_p50"], peak)  # fmt: skip
    return row


@contextmanager
def limited_threads(threads: int) -> Iterator[str]:
    """Pin FAISS (OpenMP) and every BLAS (numpy's and faiss's, via threadpoolctl when installed) to `threads`."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        logger.warning("threadpoolctl not installed: numpy's BLAS may use more than %d threads", threads)
        try:
            yield "faiss.omp_set_num_threads only"
        finally:
            faiss.omp_set_num_threads(previous)
        return
    try:
        with threadpool_limits(limits=threads):
            yield "faiss.omp_set_num_threads + threadpoolctl (all BLAS)"
    finally:
        faiss.omp_set_num_threads(previous)


# ---------------------------------------------------------------- the run


def run_scale_bench(
    spec: ScaleBenchSpec, out_dir: Path, on_row: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Generate the corpus once at the largest N, then for each N (ascending) and factory build, search and score;
    the outputs are rewritten after every row so a long run leaves partial results."""
    source = load_source_vectors(spec.vectors)
    dim = source.shape[1]
    validate_spec(spec, dim)
    sizes = sorted(set(spec.sizes))
    skipped = set(parse_skip(spec.skip))
    maker = make_generator(source, spec.generator, spec.noise, spec.target_cosine, spec.seed, spec.mix_neighbours,
                           spec.mix_alpha)  # fmt: skip
    queries, query_src = maker.queries(spec.queries)
    top1, topk = source_neighbour_profile(source, spec.k)
    real = real_profile(source, spec.k, spec.seed)
    profile: dict[str, dict[str, float | None]] = {
        str(m): {"real_top1": r1, "real_topk_last": rk, "synthetic_top1": None, "synthetic_topk_last": None}
        for m, (r1, rk) in real.items()
    }
    result: dict[str, Any] = {
        "spec": {**asdict(spec), "vectors": str(spec.vectors), "search_params": dict(spec.search_params)},
        "vectors": {
            "source": str(spec.vectors),
            "source_count": len(source),
            "dim": dim,
            "generator": spec.generator,
            "target_cosine": resolve_target_cosine(spec.generator, spec.target_cosine),
            "method": vectors_method(spec),
            "source_nearest_other_source_cosine": top1,
            "source_kth_other_source_cosine": topk,
            "profile_held_out_queries": profile_sizes(len(source), spec.k)[0],
            "profile_vs_n": profile,
            "per_size": {},
        },
        "rows": [],
        "skipped": [],
        "machine": scale_machine_info(spec.threads),
        "note": spec.note,
    }
    with limited_threads(spec.threads) as thread_control:
        result["machine"]["thread_control"] = thread_control
        for n in sizes:
            # generated per size (each is a prefix of the next), so a row's memory reflects its own N
            started = time.perf_counter()
            base, base_src = maker.corpus(n)
            generation_s = time.perf_counter() - started
            started = time.perf_counter()
            _, truth = exact_search(queries, base, spec.k)
            stats = {
                "generation_s": generation_s,
                "ground_truth_s": time.perf_counter() - started,
                "copies_per_source": n / len(source),
                **vector_stats(source, base, base_src, queries, query_src, truth),
            }
            for m, row in profile.items():  # synthetic queries against the same-size prefix of the corpus
                if row["synthetic_top1"] is None and int(m) <= n:
                    row["synthetic_top1"], row["synthetic_topk_last"] = _top1_topk(queries, base[: int(m)], spec.k)
            result["vectors"]["per_size"][str(n)] = stats
            logger.info("N=%d: exact top-%d in %.1fs; %s", n, spec.k, stats["ground_truth_s"], stats)
            for template in spec.indexes:
                factory = resolve_factory(template, n, dim, spec.pq_m)
                if (template, n) in skipped or (factory, n) in skipped:
                    result["skipped"].append({"n": n, "index": template, "factory": factory})
                    logger.info("N=%d %s: skipped", n, factory)
                else:
                    row = measure(base, queries, truth, template, factory, spec)
                    result["rows"].append(row)
                    if on_row:
                        on_row(row)
                write_outputs(result, out_dir)
            del base, base_src, truth
    return result


def vectors_method(spec: ScaleBenchSpec) -> str:
    shape = ("Gaussian with the covariance of the centred source embeddings" if spec.noise == "data"
             else "isotropic Gaussian")  # fmt: skip
    cosine = resolve_target_cosine(spec.generator, spec.target_cosine)
    if spec.generator == "noise":
        recipe = (
            "generator noise: corpus row i = normalise(source[i % n_sources] + noise), queries = "
            f"normalise(source[j] + noise) for {spec.queries} seeded random sources j"
        )
        target = "the target mean cosine of a copy to its source"
    else:
        recipe = (
            "generator mix: each vector = normalise(m + noise), m = normalise(w_1 source[i_1] + w_2 source[i_2] "
            "(+ w_3 source[i_3])), where i_1 is a uniform random source, the 1 or 2 partners (equal odds) are "
            f"distinct random picks among i_1's {spec.mix_neighbours} nearest other sources (exact cosine), and the "
            f"weights are Dirichlet({spec.mix_alpha:g}) sorted so i_1, the dominant source, gets the largest; "
            f"queries are {spec.queries} more vectors made the same way from another seed stream"
        )
        target = "the target mean cosine of a vector to its noise-free mixture m"
    return (
        f"{recipe}; noise is {shape}, scaled so E|noise|^2 = 1/c^2 - 1 with c = {cosine} ({target}); seed "
        f"{spec.seed}; random draws made in chunks of {GEN_CHUNK} rows from per-chunk seeds, so each smaller corpus "
        "is a prefix of the larger ones"
    )


def scale_machine_info(threads: int) -> dict[str, Any]:
    """CPU, cores, threads, memory and the library versions the numbers depend on."""
    import faiss

    info = machine_info(threads)
    memory = next((line.split()[1] for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), None)
    info.update({
        "memory_gib": round(int(memory) / 2**20, 1) if memory else None,
        "platform": platform.platform(),
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options().strip(),
        "numpy": np.__version__,
        "faiss_omp_max_threads_at_start": faiss.omp_get_max_threads(),
    })  # fmt: skip
    return info


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


# ---------------------------------------------------------------- outputs

CSV_COLUMNS = ("n", "index", "factory", "search_params", "build_s", "train_s", "add_s", "recall@10", "latency_ms_p50",
               "latency_ms_p95", "latency_ms_mean", "bytes_per_vector", "index_bytes", "peak_rss_mb",
               "peak_rss_added_mb")  # fmt: skip


def write_outputs(result: dict[str, Any], out_dir: Path) -> None:
    """scale.json, scale.csv, scale.md and the two plots, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    k = result["spec"]["k"]
    write_json_atomic(out_dir / "scale.json", result)
    buffer = io.StringIO()
    columns = [c.replace("@10", f"@{k}") for c in CSV_COLUMNS]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({**row, "search_params": ";".join(f"{a}={b:g}" for a, b in row["search_params"].items())})
    write_text_atomic(out_dir / "scale.csv", buffer.getvalue())
    write_text_atomic(out_dir / "scale.md", scale_markdown(result))
    if result["rows"]:
        plot_scale(result, out_dir)


def scale_markdown(result: dict[str, Any]) -> str:
    spec, vectors, machine = result["spec"], result["vectors"], result["machine"]
    k = spec["k"]
    generator = vectors.get("generator", "noise")
    source_word = (
        "the one it is a noisy copy of" if generator == "noise" else "its dominant source i_1 (the largest weight)"
    )
    lines = [
        f"# Index scale curve: {vectors['dim']}-d vectors grown from {vectors['source_count']} real embeddings",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine.get('memory_gib')} GiB; "
        f"**{machine['threads']} thread(s)** ({machine.get('thread_control', '')}); faiss {machine.get('faiss')}, "
        f"numpy {machine.get('numpy')}, Python {machine['python']}.",
    ]
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    lines += [
        "",
        f"Latency is one query at a time (batch 1), p50/p95 over {spec['latency_queries']} queries, best of "
        f"{spec['repeats']} repeats. Recall@{k} is against exact inner-product top-{k} over {spec['queries']} queries. "
        "Peak RSS is the process peak from the start of the row's build to the end of its search; it includes the "
        "benchmark's own float32 corpus array (4*dim bytes per vector), which the next column leaves out (peak minus "
        "the RSS just before the build: the index, its training sample and search buffers). Bytes/vector is the "
        "serialised index's marginal size.",
        "",
        f"| N | index | factory | search params | latency p50 ms | p95 ms | recall@{k} | bytes/vector | build s | "
        "train s | peak RSS MB | RSS added MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        params = ", ".join(f"{a}={b:g}" for a, b in row["search_params"].items()) or "-"
        lines.append(
            f"| {row['n']:,} | {row['index']} | {row['factory']} | {params} | {row['latency_ms_p50']:.3f} | "
            f"{row['latency_ms_p95']:.3f} | {row[f'recall@{k}']:.4f} | {row['bytes_per_vector']:.1f} | "
            f"{row['build_s']:.1f} | {row['train_s']:.1f} | {row['peak_rss_mb']:.0f} | "
            f"{_mb(row['peak_rss_added_mb'])} |"
        )
    for skip in result["skipped"]:
        lines.append(f"| {skip['n']:,} | {skip['index']} | {skip['factory']} | skipped | | | | | | | | |")
    lines += [
        "",
        "## How the vectors were made",
        "",
        vectors["method"] + ".",
        "",
        f"Source: `{vectors['source']}` ({vectors['source_count']} x {vectors['dim']}). Real neighbour-score "
        f"profile (each source against the {vectors['source_count'] - 1} others): mean top-1 cosine "
        f"{vectors['source_nearest_other_source_cosine']:.3f}, mean top-{k}th "
        f"{vectors.get('source_kth_other_source_cosine', float('nan')):.3f}.",
        "",
        f'"Source" of a synthetic vector: {source_word}. Same-source share of exact top-{k}: the fraction of a '
        f"query's exact top-{k} whose source is the query's own (1.0: search is a lookup of one source's clump).",
        "",
        f"| N | vectors per source | mean cos to own source (corpus) | (queries) | mean cos to nearest source "
        f"(corpus) | (queries) | same-source share of exact top-{k} | mean exact top-1 score | "
        f"mean exact top-{k}th score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, stats in vectors["per_size"].items():
        lines.append(
            f"| {int(n):,} | {stats['copies_per_source']:.1f} | {stats['mean_cosine_to_source_corpus']:.3f} | "
            f"{stats['mean_cosine_to_source_queries']:.3f} | "
            f"{_f3(stats.get('mean_cosine_to_nearest_source_corpus'))} | "
            f"{_f3(stats.get('mean_cosine_to_nearest_source_queries'))} | "
            f"{stats['same_source_fraction_of_exact_top_k']:.3f} | "
            f"{stats['mean_exact_top1_score']:.3f} | {stats['mean_exact_topk_last_score']:.3f} |"
        )
    if vectors.get("profile_vs_n"):
        lines += [
            "",
            f"Neighbour-score profile at the same N, real vs synthetic: real = {vectors['profile_held_out_queries']} "
            "held-out real embeddings searched in growing sets of the other real ones; synthetic = the benchmark's "
            "queries searched in the same-size prefix of the synthetic corpus. Scores rise with N (a denser corpus "
            "has closer neighbours), so a synthetic corpus larger than the sources should score above the sources' "
            "own profile given above.",
            "",
            f"| N | real top-1 | synthetic top-1 | real top-{k}th | synthetic top-{k}th |",
            "|---|---|---|---|---|",
        ]
        for m, row in vectors["profile_vs_n"].items():
            lines.append(
                f"| {int(m):,} | {row['real_top1']:.3f} | {_f3(row['synthetic_top1'])} | "
                f"{row['real_topk_last']:.3f} | {_f3(row['synthetic_topk_last'])} |"
            )
    clumped = [n for n, stats in vectors["per_size"].items() if stats["same_source_fraction_of_exact_top_k"] >= 0.9]
    if clumped:
        lines += [
            "",
            f"Caveat: at N = {', '.join(f'{int(n):,}' for n in clumped)} nearly all of a query's exact top-{k} share "
            "its source, and their scores differ by little (compare the top-1 and top-k-th columns). Finding the "
            "right cluster is then easy but ordering near-ties is hard, which likely penalises lossy codes (PQ) "
            "more than a real corpus of that size would (untested): read those PQ recalls as a hard case.",
        ]
    lines += ["", "Plots: `scale_latency.png` (log-log p50 latency vs N), `scale_recall.png` "
              f"(recall@{k} vs N, log x).", ""]  # fmt: skip
    return "\n".join(lines)


def _f3(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def plot_scale(result: dict[str, Any], out_dir: Path) -> None:
    """Log-log latency vs N and recall vs N (log x), one line per index."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib: `pip install matplotlib`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["spec"]["k"]
    by_index: dict[str, list[dict[str, Any]]] = {}
    for row in result["rows"]:
        by_index.setdefault(row["index"], []).append(row)
    threads = result["machine"]["threads"]
    for name, key, ylabel, log_y in (
        ("scale_latency.png", "latency_ms_p50", f"search latency per query, p50 ms (batch 1, {threads} thread)", True),
        ("scale_recall.png", f"recall@{k}", f"recall@{k} vs exact", False),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, rows in by_index.items():
            rows = sorted(rows, key=lambda r: r["n"])
            (line,) = ax.plot([r["n"] for r in rows], [r[key] for r in rows], marker="o", label=label)
            if log_y:
                ax.plot([r["n"] for r in rows], [r["latency_ms_p95"] for r in rows], linestyle=":",
                        color=line.get_color(), alpha=0.7)  # fmt: skip
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
            ax.set_title("Latency vs corpus size (solid p50, dotted p95)")
        else:
            ax.set_title(f"Recall@{k} vs corpus size")
        ax.set_xlabel("N (vectors)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
