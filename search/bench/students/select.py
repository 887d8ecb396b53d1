"""What the student rows say: the Pareto flags, whether each row beats the naive int8 MiniLM, the pick under a
latency budget, and how held-out cosine to the teacher tracks recall@10 vs teacher. Pure functions over row dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from search.bench.pareto import pareto_mask

RECALL = "recall@10_vs_teacher"
LATENCY = "encode_ms_p50"


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


def budget_pick(
    rows: Sequence[Mapping[str, Any]], teacher_encode_p50: float, budget_ratio: float = 15.0, metric: str = RECALL
) -> tuple[dict[str, Any], str]:
    """The row with the best `metric` whose `encode_ms_p50` <= `teacher_encode_p50` / `budget_ratio` (ties: the
    faster), and a one-line reason naming the runner-up, the faster rows it beat and the better rows over budget.

    Rows need `name`, `encode_ms_p50` and `metric`; any metric works (test or validation figures). Raises ValueError
    listing every candidate's latency when none fits.
    """
    if not budget_ratio > 0 or not teacher_encode_p50 > 0:
        raise ValueError(f"budget_ratio and teacher_encode_p50 must be > 0, got {budget_ratio}, {teacher_encode_p50}")
    if not rows:
        raise ValueError("no candidates to pick from")
    for row in rows:
        if row.get(metric) is None or math.isnan(float(row[metric])):
            raise ValueError(f"row {row['name']!r} has no number for {metric}: {row.get(metric)!r}")
    limit = teacher_encode_p50 / budget_ratio
    budget = f"encode p50 <= {limit:.3g} ms = teacher {teacher_encode_p50:.3g} ms / {budget_ratio:g}"
    fits = sorted((row for row in rows if row[LATENCY] <= limit), key=lambda row: (-row[metric], row[LATENCY]))
    if not fits:
        listing = ", ".join(f"{row['name']} {row[LATENCY]:.3g} ms" for row in sorted(rows, key=lambda r: r[LATENCY]))
        raise ValueError(f"no candidate fits the budget ({budget}); candidates: {listing}")

    def describe(row: Mapping[str, Any]) -> str:
        return f"{row['name']} ({row[metric]:.3f} at {row[LATENCY]:.3g} ms)"

    best = fits[0]
    parts = [f"best {metric} {best[metric]:.3f} at {best[LATENCY]:.3g} ms among {len(fits)} of {len(rows)} "
             f"candidates within budget ({budget})"]  # fmt: skip
    parts.append(f"runner-up {describe(fits[1])}" if len(fits) > 1 else "no runner-up within budget")
    faster = [describe(row) for row in fits[1:] if row[LATENCY] < best[LATENCY]]
    if faster:
        parts.append(f"faster but lower: {', '.join(faster)}")
    better = [describe(row) for row in rows if row[LATENCY] > limit and row[metric] > best[metric]]
    if better:
        parts.append(f"better but over budget: {', '.join(better)}")
    return dict(best), "; ".join(parts)


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
