"""Thread limits, set in one place and on purpose.

BLAS (numpy's and FAISS's OpenBLAS) and OpenMP (FAISS's libgomp) are limited with threadpoolctl, which finds every
loaded copy. ONNX Runtime threads are session options (`compression.encoders.onnx`, spinning off by default); torch's
are process-wide and set by the torch encoder. Mixing spinning ONNX threads with a full OpenMP team per call costs
milliseconds per query (measured in benchmarks/latency/).

Mind the scope: a pthreads BLAS limit is process-wide, but OpenMP thread counts are per calling thread, so
`limit_threads` in the main thread does not reach a server's worker threads. Single-query FAISS searches are capped
per call, in the thread that searches (`indexes.faiss_index.openmp_threads` / `search_index`).

A server budgets its threads once, at start-up, with `ThreadBudget`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psutil
from threadpoolctl import ThreadpoolController, threadpool_info

POOL_HEADROOM = 4  # request-pool threads beyond the searching ones, for light routes (see `ThreadBudget`)


@contextmanager
def limit_threads(threads: int | None) -> Iterator[list[dict[str, Any]]]:
    """Limit every BLAS and OpenMP pool loaded in the process to `threads` inside the block (None: no change).

    Import FAISS/numpy before entering, so their pools are loaded and found. Yields the pools as limited. OpenMP
    limits hold for the calling thread only (see the module docstring).
    """
    if threads is None:
        yield threadpool_info()
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    controller = ThreadpoolController()
    with controller.limit(limits=threads):
        yield threadpool_info()


def thread_pools() -> list[dict[str, str | int]]:
    """The loaded BLAS/OpenMP pools: library, API, threads (for machine.json)."""
    return [
        {"api": pool["user_api"], "library": pool["internal_api"], "threads": pool["num_threads"]}
        for pool in threadpool_info()
    ]


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (containers, taskset), at most the
    machine's physical cores (hyper-threads add little to matrix work; onnxruntime's default is also physical)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        allowed = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or allowed
    return max(1, min(allowed, physical))


def resolve_threads(threads: int | None) -> int:
    """`threads`, or `available_cores()` when None: the one default of every command's and spec's thread count."""
    return available_cores() if threads is None else threads


@dataclass(frozen=True)
class ThreadBudget:
    """Threads for the whole server process, decided once at start-up from the cores and the settings.

    encoder: intra-op threads of every ONNX session and torch's process-wide count (set once): every core. Model
    work runs in at most `concurrency` threads at once (a /search/batch request or a coalesced batch of single
    queries each), and concurrent runs share their session's (or torch's) intra-op pool instead of multiplying it,
    so a lone query gets every core (compare settings under load with the harness in benchmarks/reliability/).
    search: FAISS's OpenMP team for a batch search, capped in the worker thread that searches (OpenMP counts are
    per calling thread); up to `concurrency` batches search at once, so each gets its share of the cores.
    single_query: FAISS's OpenMP team for a one-query search (one: FAISS parallelises over queries).
    request_pool: anyio's worker threads: the `concurrency` threads of model work, and `POOL_HEADROOM` for light
    routes (/health, /pipelines) so they never wait behind searches. Waiting requests hold no thread.
    """

    cores: int
    encoder: int
    search: int
    single_query: int
    request_pool: int

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"thread budget {name} must be >= 1, got {value}")

    @classmethod
    def plan(
        cls,
        threads: int | None = None,
        workers_threads: int | None = None,
        concurrency: int = 1,
        cores: int | None = None,
    ) -> ThreadBudget:
        """The budget for `concurrency` units of model work at once; `threads` (encoder threads) and
        `workers_threads` (request pool) override what the cores suggest."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        cores = cores or available_cores()
        return cls(
            cores=cores,
            encoder=threads or cores,
            search=max(1, cores // concurrency),
            single_query=1,
            request_pool=workers_threads or concurrency + POOL_HEADROOM,
        )

    def apply_torch(self) -> bool:
        """Set torch's process-wide intra-op threads to `encoder`, when torch is loaded; True if it was set."""
        torch = sys.modules.get("torch")
        if torch is None:
            return False
        torch.set_num_threads(self.encoder)
        return True

    def describe(self) -> dict[str, int]:
        return asdict(self)
