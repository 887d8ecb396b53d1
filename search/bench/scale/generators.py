"""Synthetic corpus and query vectors grown from real embeddings, in fixed-size seeded blocks.

Vectors are made GEN_BLOCK rows at a time. Block b of a stream is drawn from the seed (seed, stream, b) and computed
with the same array shapes whatever N is (a last partial block is computed whole, then cut), so the corpus for N is
the same computation on the same inputs as the first N rows of the corpus for M > N: an exact prefix, bit for bit,
on any BLAS. (Cutting a block before the noise matmul would change the matmul's shape, and BLAS kernels may sum in
another order for another shape.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexes.exact import exact_search

GENERATORS = ("mix", "noise")
NOISE_MODES = ("data", "isotropic")
# noise level per generator, chosen so the synthetic neighbour-score profile tracks the real one (see scale.md)
DEFAULT_TARGET_COSINE = {"mix": 0.87, "noise": 0.85}
MIX_NEIGHBOURS = 50  # partners of a mix are drawn among the dominant source's 50 nearest real neighbours
MIX_ALPHA = 1.0  # Dirichlet concentration of the mixing weights (1: uniform over the simplex)
MIX_MAX_PARTNERS = 2  # each mix has 1 or 2 partners besides its dominant source, with equal odds
GEN_BLOCK = 4096  # rows per generation block; fixed so smaller corpora are exact prefixes of larger ones
BASE_STREAM, QUERY_STREAM, PROFILE_STREAM = 1, 2, 3

Block = tuple[np.ndarray, np.ndarray]  # (GEN_BLOCK, dim) unit vectors and each one's (dominant) source id


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


def resolve_target_cosine(generator: str, target_cosine: float | None) -> float:
    """The noise level: the given cosine, or the generator's default."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}: use one of {', '.join(GENERATORS)}")
    return DEFAULT_TARGET_COSINE[generator] if target_cosine is None else target_cosine


def check_mix_params(mix_neighbours: int, mix_alpha: float) -> None:
    """Reject a neighbour count below 1 and a Dirichlet concentration that is not a finite positive number."""
    if mix_neighbours < 1:
        raise ValueError(f"mix neighbours must be >= 1, got {mix_neighbours}")
    if not (mix_alpha > 0 and math.isfinite(mix_alpha)):
        raise ValueError(f"mix alpha (Dirichlet concentration) must be a finite number > 0, got {mix_alpha}")


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


def nearest_other_sources(source: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each source's `k` nearest other sources by cosine, best first: (scores, ids), by exact search on the sources
    (self is dropped wherever duplicates put it)."""
    k = min(k, len(source) - 1)
    scores, ids = exact_search(source, source, k + 1)
    is_self = ids == np.arange(len(source))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def source_neighbours(source: np.ndarray, k: int) -> np.ndarray:
    """Each source's `k` nearest other sources by cosine, best first (the "mix" partner table)."""
    return nearest_other_sources(source, k)[1]


def _normalise_rows(block: np.ndarray) -> np.ndarray:
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    return block


def noise_block(source: np.ndarray, transform: np.ndarray, seed: int, stream: int, block: int) -> Block:
    """Block `block` of the "noise" generator: `normalise(source[id] + z @ transform)`; corpus row i copies source
    i % n_sources, query rows copy seeded uniform random sources."""
    n_sources, dim = source.shape
    rng = np.random.default_rng([seed, stream, block])
    if stream == BASE_STREAM:
        ids = np.arange(block * GEN_BLOCK, (block + 1) * GEN_BLOCK, dtype=np.int64) % n_sources
    else:
        ids = rng.integers(0, n_sources, GEN_BLOCK)
    vectors = source[ids] + rng.standard_normal((GEN_BLOCK, dim), dtype=np.float32) @ transform
    return _normalise_rows(vectors), ids


def mix_block(
    source: np.ndarray, neighbours: np.ndarray, transform: np.ndarray, alpha: float, seed: int, stream: int, block: int
) -> Block:
    """Block `block` of the "mix" generator: `normalise(m + z @ transform)`, m = normalise(sum_k w_k source[i_k]),
    and each row's dominant source i_1.

    i_1 is uniform over the sources; 1 or 2 partners (equal odds) are distinct random picks among i_1's rows of
    `neighbours`; weights are Dirichlet(alpha), sorted so i_1 gets the largest.
    """
    n_sources, dim = source.shape
    k = neighbours.shape[1]
    rng = np.random.default_rng([seed, stream, block])
    first = rng.integers(0, n_sources, GEN_BLOCK)
    partners = rng.integers(1, MIX_MAX_PARTNERS + 1, GEN_BLOCK)
    rank_a = rng.integers(0, k, GEN_BLOCK)
    rank_b = rng.integers(0, max(k - 1, 1), GEN_BLOCK)
    weights = rng.dirichlet(np.full(MIX_MAX_PARTNERS + 1, alpha), GEN_BLOCK)
    if k > 1:
        rank_b = rank_b + (rank_b >= rank_a)  # a second neighbour distinct from the first
    ids = (first, neighbours[first, rank_a], neighbours[first, rank_b])
    weights[partners == 1, 2] = 0.0  # one partner: Dirichlet(alpha, alpha) over the first two
    weights = -np.sort(-weights, axis=1)
    weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    vectors = source[ids[0]] * weights[:, :1]
    for column in (1, 2):
        vectors += source[ids[column]] * weights[:, column : column + 1]
    _normalise_rows(vectors)
    vectors += rng.standard_normal((GEN_BLOCK, dim), dtype=np.float32) @ transform
    return _normalise_rows(vectors), first


def assemble(make_block: Callable[[int], Block], count: int, dim: int) -> Block:
    """The first `count` rows of blocks 0, 1, ... of `make_block`, and their source ids."""
    vectors = np.empty((count, dim), dtype=np.float32)
    ids = np.empty(count, dtype=np.int64)
    for block, start in enumerate(range(0, count, GEN_BLOCK)):
        rows = min(GEN_BLOCK, count - start)
        block_vectors, block_ids = make_block(block)
        vectors[start : start + rows] = block_vectors[:rows]
        ids[start : start + rows] = block_ids[:rows]
    return vectors, ids


@dataclass(frozen=True, eq=False)
class VectorGenerator:
    """A seeded generator of synthetic corpus and query vectors grown from `source`.

    - "mix": each vector is `normalise(normalise(sum_k w_k source[i_k]) + noise)` (see `mix_block`): a new point
      between related documents, so a large corpus is not made of clumps of copies.
    - "noise": corpus row i is `normalise(source[i % n] + noise)`, a noisy copy of one source. From ~20 copies per
      source the exact top-10 of a query is almost all copies of its own source (clumps of near-ties).

    `corpus(n)` and `queries(count)` return the vectors and each one's (dominant) source; corpus(m) is exactly the
    first m rows of corpus(n) for m <= n (see the module docstring).
    """

    kind: str
    source: np.ndarray
    transform: np.ndarray
    seed: int
    neighbours: np.ndarray | None = None
    alpha: float = MIX_ALPHA

    def corpus(self, n: int) -> Block:
        return assemble(lambda block: self.block(BASE_STREAM, block), n, self.source.shape[1])

    def queries(self, count: int) -> Block:
        return assemble(lambda block: self.block(QUERY_STREAM, block), count, self.source.shape[1])

    def block(self, stream: int, block: int) -> Block:
        """Rows [block * GEN_BLOCK, (block + 1) * GEN_BLOCK) of `stream`."""
        if self.kind == "noise":
            return noise_block(self.source, self.transform, self.seed, stream, block)
        if self.neighbours is None:
            raise ValueError("the mix generator needs its neighbour table: build it with make_generator")
        return mix_block(self.source, self.neighbours, self.transform, self.alpha, self.seed, stream, block)


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


def make_vectors(
    source: np.ndarray, n: int, queries: int, mode: str = "data", target_cosine: float | None = None, seed: int = 0,
    generator: str = "mix",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The seeded corpus of n vectors, its (dominant) source ids, the queries and theirs."""
    maker = make_generator(source, generator, mode, target_cosine, seed)
    return (*maker.corpus(n), *maker.queries(queries))
