"""Pareto frontier of (quality, cost) points: higher quality and lower cost are better. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when `a` = (quality, cost) is at least as good as `b` on both and strictly better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_mask(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (quality, cost) point, whether no other point dominates it; equal points are all kept.

    Sorting by cost (then quality descending) makes it O(n log n): a point is on the frontier iff its quality
    beats every point that costs less, and it is the best among the points of equal cost.
    """
    for quality, cost in points:
        if quality != quality or cost != cost:  # NaN compares false with everything: reject rather than guess
            raise ValueError(f"pareto points must be numbers, got ({quality}, {cost})")
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    mask = [False] * len(points)
    best_cheaper = float("-inf")  # best quality among points strictly cheaper than the current cost
    i = 0
    while i < len(order):
        cost = points[order[i]][1]
        group = [j for j in order[i:] if points[j][1] == cost]
        top = points[group[0]][0]  # sorted by quality descending within one cost
        for j in group:
            mask[j] = points[j][0] == top and top > best_cheaper
        best_cheaper = max(best_cheaper, top)
        i += len(group)
    return mask


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The frontier points sorted by cost (for drawing a step line)."""
    return sorted((p for p, keep in zip(points, pareto_mask(points), strict=True) if keep), key=lambda p: (p[1], -p[0]))
