"""Thread limits, set in one place and on purpose.

BLAS (numpy's and FAISS's OpenBLAS) and OpenMP (FAISS's libgomp) are limited with threadpoolctl, which finds every
loaded copy. ONNX Runtime threads are session options (`compression.encoders.onnx`, spinning off by default); torch's
are process-wide and set by the torch encoder. Mixing spinning ONNX threads with a full OpenMP team per call costs
milliseconds per query (issue 9, benchmarks/latency/).

Mind the scope: a pthreads BLAS limit is process-wide, but OpenMP thread counts are per calling thread, so
`limit_threads` in the main thread does not reach a server's worker threads. Single-query FAISS searches are capped
per call, in the thread that searches (`indexes.faiss_index.openmp_threads` / `search_index`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController, threadpool_info


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
