"""What the student rows say: the Pareto flags, whether each row beats the naive int8 MiniLM, and how held-out cosine
to the teacher tracks recall@10 vs teacher (the pick under a latency budget is `search.selection.budget_pick`). Pure
functions over row dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search.selection import LATENCY, RECALL, pareto_mask


def annotate_rows(rows: list[dict[str, Any]], teacher: str, naive: str | None) -> None:
    """Set on every row `pareto` (frontier of recall@10 vs teacher up, encode p50 down), `speedup_vs_teacher`
    (the `teacher` row's encode p50 / the row's) and `beats_minilm_int8` (recall@10 vs teacher >= the `naive` row's;
    None without such a row)."""
    by_name = {row["name"]: row for row in rows}
    for name in (teacher, naive):
        if name is not None and name not in by_name:
            raise ValueError(f"no row named {name!r}; rows: {', '.join(by_name)}")
    mask = pareto_mask([(row[RECALL], row[LATENCY]) for row in rows])
    teacher_ms = by_name[teacher][LATENCY]
    floor = by_name[naive][RECALL] if naive is not None else None
    for row, keep in zip(rows, mask, strict=True):
        row["pareto"] = keep
        row["speedup_vs_teacher"] = teacher_ms / row[LATENCY] if row[LATENCY] > 0 else math.inf
        row["beats_minilm_int8"] = None if floor is None else row[RECALL] >= floor


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (as Spearman's rho needs)."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # the rank of each group's last member
    return (ends - (counts - 1) / 2.0)[inverse]


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Pearson's r and Spearman's rho of paired samples; None where undefined (fewer than 3 pairs, or a constant)."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}")

    def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
        if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            return None
        return float(np.corrcoef(a, b)[0, 1])

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return {"n": len(a), "pearson": pearson(a, b), "spearman": pearson(average_ranks(a), average_ranks(b))}


def cosine_recall_correlation(rows: Sequence[Mapping[str, Any]], exclude_family: str) -> dict[str, Any]:
    """How held-out mean cosine to the teacher tracks recall@10 vs teacher over the rows that have a cosine,
    leaving out the `exclude_family` rows (the references: the teacher's own (1, 1) would anchor the fit)."""
    used = [row for row in rows if row.get("heldout_cosine") is not None and row["family"] != exclude_family]
    result = correlation([row["heldout_cosine"] for row in used], [row[RECALL] for row in used])
    return {"x": "heldout_cosine", "y": RECALL, "rows": [row["name"] for row in used], **result}
