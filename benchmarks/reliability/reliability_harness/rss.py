"""The server's resident memory, sampled on a background thread (psutil), for "flat RSS" and "growth < 200 MB"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

MB = 1 << 20


@dataclass
class RssTrace:
    """RSS samples in bytes (first, peak, last)."""

    samples: list[int] = field(default_factory=list)

    @property
    def start_mb(self) -> float:
        return self.samples[0] / MB if self.samples else 0.0

    @property
    def peak_mb(self) -> float:
        return max(self.samples) / MB if self.samples else 0.0

    @property
    def end_mb(self) -> float:
        return self.samples[-1] / MB if self.samples else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "rss_start_mb": round(self.start_mb, 1),
            "rss_peak_mb": round(self.peak_mb, 1),
            "rss_end_mb": round(self.end_mb, 1),
            "rss_growth_mb": round(self.peak_mb - self.start_mb, 1),
        }


def rss_bytes(pid: int) -> int:
    """Resident bytes of `pid` and its children (uvicorn may fork; the search runs in one of them)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@contextmanager
def sample_rss(pid: int, every_s: float = 0.1) -> Iterator[RssTrace]:
    """Sample `pid`'s RSS every `every_s` while the block runs (one sample at entry and one at exit at least)."""
    trace = RssTrace([rss_bytes(pid)])
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                trace.samples.append(rss_bytes(pid))
            except psutil.NoSuchProcess:
                return

    thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield trace
    finally:
        stop.set()
        thread.join()
        try:
            trace.samples.append(rss_bytes(pid))
        except psutil.NoSuchProcess:
            pass
