"""What a scale run measures (`ScaleBenchSpec`), how factory templates resolve at each N, and the checks made
before any vector is generated."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexes.faiss_index import default_nlist, default_search_params, validate_factory
from search.bench.scale.generators import (
    MIX_ALPHA,
    MIX_NEIGHBOURS,
    check_mix_params,
    noise_transform,
    resolve_target_cosine,
)
from semsearch_common.threads import available_cores

DEFAULT_INDEXES = ("Flat", "IVF{nlist},PQ{m}", "IVF{nlist},PQ{m},RFlat", "HNSW32")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
MIN_SIZE = 10


@dataclass(frozen=True)
class ScaleBenchSpec:
    """What to measure: the source embeddings, the corpus sizes, the index factories and how to time them.

    Factories may hold `{nlist}` (see `default_nlist`) and `{m}` (PQ bytes, `pq_m` or dim/8). `search_params` override
    the defaults (nprobe = nlist/16, efSearch 64, k_factor 4) for the indexes they apply to. `skip` holds
    `FACTORY@N` pairs (the factory as given or as resolved) that are not run. `generator` is "mix" or "noise" (see
    `generators.VectorGenerator`); `target_cosine` None means the generator's default (`DEFAULT_TARGET_COSINE`).
    `threads` limits every BLAS and OpenMP pool (FAISS's included) for the whole run (default: every core this process
    may use). Lossy codes are rescored by default from fp16 rows (`oversample` 4, as an index directory's vector file
    gives them). `index_dirs`: also save each index as an index directory (fp16 vector file, SQLite document store)
    and measure it in a fresh process as `semsearch serve` opens it (`probe`): resident bytes per vector after
    `warm_queries` queries, and latency with the vector file's pages warm and evicted (`cold_queries`).
    """

    vectors: Path
    sizes: tuple[int, ...] = DEFAULT_SIZES
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    queries: int = 1000
    latency_queries: int = 200
    repeats: int = 2
    k: int = 10
    threads: int = field(default_factory=available_cores)
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
    index_dirs: bool = False
    warm_queries: int = 1000
    cold_queries: int = 200
    serve_mmap: bool = False


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


def params_for(factory: str, overrides: Mapping[str, float]) -> dict[str, float]:
    """The default search parameters of `factory`, with the overrides that apply to it."""
    params = default_search_params(factory, vector_file=True)
    params.update({key: value for key, value in overrides.items() if key in params})
    return params


def parse_skip(entries: Sequence[str]) -> list[tuple[str, int]]:
    """Parse `FACTORY@N` entries into (factory, N) pairs."""
    pairs = []
    for entry in entries:
        factory, sep, size = entry.rpartition("@")
        if not sep or not factory or not size.strip().isdigit():
            raise ValueError(f"bad --skip {entry!r}: use FACTORY@N, e.g. HNSW32@1000000")
        pairs.append((factory.strip(), int(size)))
    return pairs


def validate_spec(spec: ScaleBenchSpec, dim: int) -> None:
    """Reject bad sizes, counts and factories before any vector is generated."""
    if not spec.sizes:
        raise ValueError("no sizes given: pass e.g. --size 10000 --size 100000")
    for n in spec.sizes:
        if n < max(MIN_SIZE, spec.k):
            raise ValueError(f"size {n} is too small: every N must be >= {max(MIN_SIZE, spec.k)}")
    for name, value in (("queries", spec.queries), ("latency queries", spec.latency_queries),
                        ("repeats", spec.repeats), ("k", spec.k), ("threads", spec.threads),
                        ("train sample", spec.train_sample), ("warm queries", spec.warm_queries)):  # fmt: skip
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
