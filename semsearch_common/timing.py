"""Timing loops, one home: a short untimed warm-up, then one call at a time, best of several passes.

Every latency figure in the project (query encoding, index search, the evaluator, the benchmarks) comes from here,
so they are measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

WARMUP_CALLS = 3
Best = Literal["per_item", "per_pass"]


@dataclass(frozen=True)
class TimedCalls(Generic[R]):
    """The results of the last pass (in item order) and each item's seconds."""

    results: list[R]
    seconds: np.ndarray

    def percentile_ms(self, q: float) -> float:
        return percentile_ms(self.seconds, q)


def time_each(
    call: Callable[[T], R],
    items: Sequence[T],
    warmup: int = WARMUP_CALLS,
    repeats: int = 1,
    best: Best = "per_item",
) -> TimedCalls[R]:
    """Call `call(item)` for each item alone, after `warmup` untimed calls on the first items.

    With `repeats` > 1, `per_item` keeps each item's fastest time (ann-benchmarks' best-of-N); `per_pass` keeps the
    whole pass with the lowest median, so its tail percentiles stay those of one real pass.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if best not in ("per_item", "per_pass"):
        raise ValueError(f"unknown best {best!r}: use per_item or per_pass")
    for item in items[:warmup]:
        call(item)
    kept: np.ndarray | None = None
    results: list[R] = []
    for _ in range(repeats):
        results = []
        seconds = np.empty(len(items))
        for i, item in enumerate(items):
            started = time.perf_counter()
            results.append(call(item))
            seconds[i] = time.perf_counter() - started
        if kept is None:
            kept = seconds
        elif best == "per_item":
            kept = np.minimum(kept, seconds)
        elif np.median(seconds) < np.median(kept):
            kept = seconds
    return TimedCalls(results, kept if kept is not None else np.empty(0))


def time_pass(call: Callable[[], object], repeats: int = 1, warmup: Callable[[], object] | None = None) -> float:
    """Seconds of the fastest of `repeats` runs of `call()` (a whole pass, e.g. all queries in batches)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup is not None:
        warmup()
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def percentile_ms(samples_seconds: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile of durations given in seconds, in milliseconds."""
    if len(samples_seconds) == 0:
        raise ValueError("no timing samples")
    return float(np.percentile(np.asarray(samples_seconds) * 1000.0, q))
