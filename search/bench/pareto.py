"""Pareto frontier of (quality, cost) points: higher quality and lower cost are better. Pure functions, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


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
