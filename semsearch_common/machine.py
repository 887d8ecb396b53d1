"""Machine facts and memory figures for benchmark reports, from psutil (portable, unlike /proc and ru_maxrss)."""

from __future__ import annotations

import gc
import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from semsearch_common.threads import thread_pools

SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni")
MIB = 1024.0 * 1024.0


def cpu_name() -> str:
    """The CPU model and the SIMD extensions that matter for int8 and FAISS kernels."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        flags = set(next((line for line in lines if line.startswith("flags")), "").split())
        simd = [flag for flag in SIMD_FLAGS if flag in flags]
        return f"{names[0] if names else 'unknown'} ({', '.join(simd)})"
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU, cores, memory, Python, the threads asked for and the BLAS/OpenMP pools as loaded; BLAS env settings."""
    return {
        "cpu": cpu_name(),
        "cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / (1024.0**3), 1),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "thread_pools": thread_pools(),
        "blas_env": {key: os.environ[key] for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if key in os.environ},
    }


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    return psutil.Process().memory_info().rss / MIB


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS where the C library allows it (glibc
    `malloc_trim`), so the RSS before a measurement counts live data only."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class PeakRss:
    """The peak RSS (MiB) seen while the block ran, sampled by a background thread every `interval` seconds."""

    start_mb: float = 0.0
    peak_mb: float = 0.0


@contextmanager
def track_peak_rss(interval: float = 0.01) -> Iterator[PeakRss]:
    """Sample this process's RSS in a thread while the block runs; a portable peak that can be reset per block
    (the kernel's ru_maxrss is a lifetime maximum, in KiB on Linux and bytes on macOS)."""
    process = psutil.Process()
    peak = PeakRss(start_mb=rss_mb(), peak_mb=rss_mb())
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.peak_mb = max(peak.peak_mb, process.memory_info().rss / MIB)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak.peak_mb = max(peak.peak_mb, rss_mb())
