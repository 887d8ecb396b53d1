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
DEFAULT_LATENCY_NOISE = 0.10  # relative: encode p50 wobbles by a few percent between identical runs
DEFAULT_METRIC_NOISE = 0.005  # absolute, in the metric's units


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
