"""Choosing among measured configurations: the Pareto frontier of (quality, cost) points, and the pick under a latency
budget with run-to-run noise allowed for. Pure functions over numbers and result rows, no I/O."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RECALL = "recall@10_vs_teacher"
LATENCY = "encode_ms_p50"
DEFAULT_LATENCY_NOISE = 0.10  # relative: encode p50 wobbles by a few percent between identical runs
DEFAULT_METRIC_NOISE = 0.005  # absolute, in the metric's units


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when `a` = (quality, cost) is at least as good as `b` on both and strictly better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_mask(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (quality, cost) point, whether no other point dominates it; equal points are all kept.

    O(n log n): sort by cost (quality descending within a cost), then sweep the groups of equal cost once, keeping
    the best quality among strictly cheaper points. A point is on the frontier iff it has its group's top quality
    (a same-cost point of higher quality dominates it) and that quality beats every strictly cheaper point's (one
    of equal or higher quality at a lower cost dominates it).
    """
    for quality, cost in points:
        if quality != quality or cost != cost:  # NaN compares false with everything: reject rather than guess
            raise ValueError(f"pareto points must be numbers, got ({quality}, {cost})")
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    mask = [False] * len(points)
    best_cheaper: float | None = None  # best quality among points strictly cheaper (None: none yet; not -inf,
    # so a cheapest point of quality -inf is still kept)
    for _, group in itertools.groupby(order, key=lambda i: points[i][1]):
        members = list(group)
        top = points[members[0]][0]  # sorted by quality descending within one cost
        for i in members:
            mask[i] = points[i][0] == top and (best_cheaper is None or top > best_cheaper)
        best_cheaper = top if best_cheaper is None else max(best_cheaper, top)
    return mask


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The frontier points sorted by cost (for drawing a step line)."""
    return sorted((p for p, keep in zip(points, pareto_mask(points), strict=True) if keep), key=lambda p: (p[1], -p[0]))


def budget_pick(
    rows: Sequence[Mapping[str, Any]],
    teacher_encode_p50: float,
    budget_ratio: float = 15.0,
    metric: str = RECALL,
    *,
    noise: float = DEFAULT_LATENCY_NOISE,
    metric_noise: float = DEFAULT_METRIC_NOISE,
) -> tuple[dict[str, Any], str]:
    """The row with the best `metric` among the candidates within budget (ties: the faster; full ties: the earlier
    row), and a one-line reason naming the runner-up, the faster rows it beat and the better rows over budget.

    The budget line is `teacher_encode_p50` / `budget_ratio`. A row is a candidate unless its `encode_ms_p50` is
    clearly over: above line * (1 + `noise`) (relative latency noise, in [0, 1)); rows within `noise` of the line
    count as within budget, so a few percent of run-to-run wobble cannot flip the pick, and the reason says so when
    the pick or the runner-up is on the line. `noise=0` is the strict `p50 <= line`. When the best leads a runner-up
    of another latency by less than `metric_noise` (>= 0) the reason says they are within metric noise.

    Rows need `name`, `encode_ms_p50` and `metric`; any metric works (test or validation figures). Raises ValueError
    listing every candidate's latency when none fits, and on arguments out of range.
    """
    if not budget_ratio > 0 or not teacher_encode_p50 > 0:
        raise ValueError(f"budget_ratio and teacher_encode_p50 must be > 0, got {budget_ratio}, {teacher_encode_p50}")
    if not 0 <= noise < 1:
        raise ValueError(f"noise must be a relative latency noise in [0, 1), got {noise}")
    if not metric_noise >= 0:
        raise ValueError(f"metric_noise must be >= 0 (in [0, inf)), got {metric_noise}")
    if not rows:
        raise ValueError("no candidates to pick from")
    for row in rows:
        if row.get(metric) is None or math.isnan(float(row[metric])):
            raise ValueError(f"row {row['name']!r} has no number for {metric}: {row.get(metric)!r}")
    limit = teacher_encode_p50 / budget_ratio
    low, high = limit * (1 - noise), limit * (1 + noise)
    band = f"{noise * 100:g}%"
    budget = f"encode p50 <= {limit:.3g} ms = teacher {teacher_encode_p50:.3g} ms / {budget_ratio:g}"
    if noise > 0:
        budget += f", rows within {band} latency noise of the line (<= {high:.3g} ms) counted in"
    fits = sorted((row for row in rows if row[LATENCY] <= high), key=lambda row: (-row[metric], row[LATENCY]))
    if not fits:
        listing = ", ".join(f"{row['name']} {row[LATENCY]:.3g} ms" for row in sorted(rows, key=lambda r: r[LATENCY]))
        raise ValueError(f"no candidate fits the budget ({budget}); candidates: {listing}")

    def describe(row: Mapping[str, Any]) -> str:
        return f"{row['name']} ({row[metric]:.3f} at {row[LATENCY]:.3g} ms)"

    def on_the_line(row: Mapping[str, Any]) -> str | None:
        if row[LATENCY] <= low:
            return None
        return (f"{row['name']} is within {band} noise of the budget line ({row[LATENCY]:.3g} ms vs {limit:.3g} ms): "
                "counted as within budget")  # fmt: skip

    best = fits[0]
    runner = fits[1] if len(fits) > 1 else None
    parts = [f"best {metric} {best[metric]:.3f} at {best[LATENCY]:.3g} ms among {len(fits)} of {len(rows)} "
             f"candidates within budget ({budget})"]  # fmt: skip
    parts.append(f"runner-up {describe(runner)}" if runner is not None else "no runner-up within budget")
    line = on_the_line(best)
    if line is not None:
        if runner is not None and best[metric] > runner[metric]:
            line += ", and it is the more faithful"
        elif runner is not None and best[LATENCY] < runner[LATENCY]:
            line += f", and the faster at equal {metric}"
        parts.append(line)
    line = on_the_line(runner) if runner is not None else None
    if line is not None:
        parts.append(f"runner-up {line}")
    if runner is not None and best[metric] - runner[metric] < metric_noise and best[LATENCY] != runner[LATENCY]:
        why = f"picked for the higher {metric} anyway" if best[metric] > runner[metric] else "picked as the faster"
        parts.append(f"{best['name']} is within metric noise ({metric_noise:g}) of {describe(runner)}: {why}")
    faster = [describe(row) for row in fits[1:] if row[LATENCY] < best[LATENCY]]
    if faster:
        parts.append(f"faster but lower: {', '.join(faster)}")
    better = [describe(row) for row in rows if row[LATENCY] > high and row[metric] > best[metric]]
    if better:
        parts.append(f"better but over budget: {', '.join(better)}")
    return dict(best), "; ".join(parts)


def latency_noise(samples_by_round: Sequence[Sequence[float]]) -> float:
    """The relative spread of one candidate's p50 over repeated (interleaved) timing rounds: (max p50 - min p50) /
    median p50, each round's p50 the median of its samples. A full range, so a conservative `noise` for
    `budget_pick` (which takes a half-width). Raises ValueError on fewer than 2 rounds, an empty round or a median
    p50 <= 0.
    """
    if len(samples_by_round) < 2:
        raise ValueError(f"need at least 2 timing rounds to see their spread, got {len(samples_by_round)}")
    if any(len(samples) == 0 for samples in samples_by_round):
        raise ValueError("every timing round needs at least one sample")
    p50s = np.array([np.median(np.asarray(samples, dtype=np.float64)) for samples in samples_by_round])
    middle = float(np.median(p50s))
    if not middle > 0:
        raise ValueError(f"the median p50 must be > 0, got {middle}")
    return float((p50s.max() - p50s.min()) / middle)
