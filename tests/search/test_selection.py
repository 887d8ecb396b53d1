"""`search.selection`: the Pareto frontier against its O(n^2) definition, and `budget_pick` on hand-made rows, under
latency noise (rows within the band of the budget line count as within budget, so run-to-run wobble cannot flip the
pick) with `latency_noise` estimating the band from repeated timing rounds."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from search.selection import DEFAULT_LATENCY_NOISE, budget_pick, dominates, frontier, latency_noise, pareto_mask


def row(name: str, recall: float, ms: float) -> dict[str, Any]:
    return {"name": name, "recall@10_vs_teacher": recall, "encode_ms_p50": ms}


def brute_force_mask(points: list[tuple[float, float]]) -> list[bool]:
    """The O(n^2) definition, written out independently: kept unless another point has quality >= and cost <=,
    strictly better on one of the two."""
    return [not any(q >= p_q and c <= p_c and (q > p_q or c < p_c) for q, c in points) for p_q, p_c in points]


def test_pareto_on_hand_made_points():
    points = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.8, 5.0), (0.95, 20.0), (0.7, 5.0), (0.5, 1.0), (0.9, 11.0)]
    # (0.85, 12) loses to (0.9, 10); (0.7, 5) to (0.8, 5); (0.9, 11) to (0.9, 10); equal points are both kept
    assert pareto_mask(points) == [True, True, False, True, True, False, True, False]
    assert frontier(points) == [(0.5, 1.0), (0.8, 5.0), (0.8, 5.0), (0.9, 10.0), (0.95, 20.0)]
    assert pareto_mask([]) == []
    assert frontier([]) == []
    assert pareto_mask([(0.3, 2.0)]) == [True]


@pytest.mark.parametrize("bad", [(float("nan"), 1.0), (1.0, float("nan"))])
def test_pareto_rejects_nan(bad):
    with pytest.raises(ValueError, match="must be numbers"):
        pareto_mask([(0.5, 1.0), bad])


def test_dominates_is_strict_on_one_side():
    assert dominates((0.9, 1.0), (0.8, 1.0))
    assert dominates((0.8, 0.5), (0.8, 1.0))
    assert not dominates((0.8, 1.0), (0.8, 1.0))  # equal points do not dominate each other
    assert not dominates((0.9, 2.0), (0.8, 1.0))  # better quality but dearer: a trade-off


def test_pareto_matches_brute_force_on_random_points_with_ties():
    rng = random.Random(0)
    qualities = [0.0, 0.1, 0.5, 0.5000001, 0.9, 1.0, float("inf"), float("-inf")]
    costs = [-0.0, 0.0, 1.0, 2.0, 2.0000001, 3.0, float("inf")]
    for _ in range(500):
        points = [(rng.choice(qualities), rng.choice(costs)) for _ in range(rng.randint(1, 30))]
        assert pareto_mask(points) == brute_force_mask(points), points
        kept = [p for p, keep in zip(points, brute_force_mask(points), strict=True) if keep]
        assert sorted(frontier(points)) == sorted(kept)
        front = frontier(points)
        assert [c for _, c in front] == sorted(c for _, c in front)  # drawn left to right


def test_pareto_matches_brute_force_on_continuous_random_points():
    rng = random.Random(1)
    for _ in range(50):
        points = [(rng.random(), rng.expovariate(1.0)) for _ in range(rng.randint(1, 200))]
        assert pareto_mask(points) == brute_force_mask(points)


def test_budget_pick_best_within_budget_with_reason():
    rows = [row("slow-good", 0.95, 4.0), row("fit-best", 0.85, 1.9), row("fit-tie-slower", 0.85, 2.0),
            row("fast-worse", 0.70, 0.5), row("edge", 0.80, 2.0)]  # fmt: skip
    picked, reason = budget_pick(rows, teacher_encode_p50=30.0, budget_ratio=15)  # budget 2.0 ms, inclusive
    assert picked["name"] == "fit-best"
    assert picked is not rows[1]
    assert "runner-up fit-tie-slower (0.850 at 2 ms)" in reason
    assert "faster but lower: fast-worse (0.700 at 0.5 ms)" in reason
    assert "better but over budget: slow-good (0.950 at 4 ms)" in reason
    assert "4 of 5 candidates" in reason
    assert "2 ms = teacher 30 ms / 15" in reason
    same = [row("first", 0.8, 1.0), row("second", 0.8, 1.0)]
    assert budget_pick(same, 30.0)[0]["name"] == "first"  # full tie: the earlier row
    one, reason = budget_pick([row("only", 0.5, 1.0)], 30.0)
    assert one["name"] == "only"
    assert "no runner-up" in reason
    validation = [
        {"name": "v1", "val_r": 0.6, "encode_ms_p50": 1.0},
        {"name": "v2", "val_r": 0.7, "encode_ms_p50": 1.5},
    ]
    assert budget_pick(validation, 30.0, metric="val_r")[0]["name"] == "v2"  # any metric, no test-split fields


def test_budget_pick_errors_list_the_candidates():
    with pytest.raises(ValueError, match=r"no candidate fits the budget \(encode p50 <= 1 ms.*a 2 ms, b 3 ms"):
        budget_pick([row("b", 0.9, 3.0), row("a", 0.8, 2.0)], teacher_encode_p50=15.0, budget_ratio=15)
    with pytest.raises(ValueError, match="no candidates"):
        budget_pick([], 30.0)
    with pytest.raises(ValueError, match="must be > 0"):
        budget_pick([row("a", 0.8, 1.0)], 30.0, budget_ratio=0)
    with pytest.raises(ValueError, match="'a' has no number"):
        budget_pick([row("a", float("nan"), 1.0)], 30.0)


TEACHER_MS, RATIO = 83.7, 15.0
LIMIT = TEACHER_MS / RATIO  # 5.58 ms


FRONTIER = [row("fast", 0.80, 0.4 * LIMIT), row("faithful", 0.90, 1.02 * LIMIT), row("slow", 0.97, 1.5 * LIMIT)]


def jittered(rows: list[dict[str, Any]], factors: np.ndarray) -> list[dict[str, Any]]:
    return [{**r, "encode_ms_p50": r["encode_ms_p50"] * float(f)} for r, f in zip(rows, factors, strict=True)]


def test_the_pick_is_stable_under_five_percent_latency_noise_but_flips_without_the_band():
    draws = 1.0 + np.random.default_rng(7).uniform(-0.05, 0.05, size=(200, len(FRONTIER)))
    banded = [budget_pick(jittered(FRONTIER, f), TEACHER_MS, RATIO)[0]["name"] for f in draws]
    strict = [budget_pick(jittered(FRONTIER, f), TEACHER_MS, RATIO, noise=0.0)[0]["name"] for f in draws]
    assert DEFAULT_LATENCY_NOISE == pytest.approx(0.10)
    assert set(banded) == {"faithful"}
    assert set(strict) == {"fast", "faithful"}  # the old strict line: the same draws flip the shipped model
    assert 10 < strict.count("faithful") < 190


def test_a_row_clearly_over_budget_is_never_picked():
    over = row("over", 0.99, 1.3 * LIMIT)
    draws = 1.0 + np.random.default_rng(11).uniform(-0.05, 0.05, size=(200, 2))
    for factors in draws:
        rows = jittered([row("fits", 0.5, 0.9 * LIMIT), over], factors)
        picked, reason = budget_pick(rows, TEACHER_MS, RATIO)
        assert picked["name"] == "fits"
        assert "better but over budget: over" in reason
    for noise in (0.0, 0.1, 0.2, 0.29):
        with pytest.raises(ValueError, match="no candidate fits the budget"):
            budget_pick([over], TEACHER_MS, RATIO, noise=noise)
    # the band's edges: limit * (1 + noise) is in, anything above it out
    assert budget_pick([row("edge", 0.5, 2.0 * 1.1)], 30.0, 15.0, noise=0.1)[0]["name"] == "edge"
    with pytest.raises(ValueError, match=r"<= 2.2 ms\) counted in.*edge 2.2 ms"):
        budget_pick([row("edge", 0.5, 2.0 * 1.1 * (1 + 1e-9))], 30.0, 15.0, noise=0.1)


def test_the_reason_names_the_noise_band_when_the_pick_or_runner_up_is_on_the_line():
    picked, reason = budget_pick([row("fast", 0.80, 2.0), row("faithful", 0.90, 5.61)], TEACHER_MS, RATIO)
    assert picked["name"] == "faithful"
    assert ("faithful is within 10% noise of the budget line (5.61 ms vs 5.58 ms): counted as within budget, "
            "and it is the more faithful") in reason  # fmt: skip
    assert "runner-up fast (0.800 at 2 ms)" in reason
    assert "<= 6.14 ms) counted in" in reason
    picked, reason = budget_pick([row("quick", 0.90, 1.0), row("close", 0.85, 5.5)], TEACHER_MS, RATIO)
    assert picked["name"] == "quick"
    assert "runner-up close is within 10% noise of the budget line (5.5 ms vs 5.58 ms)" in reason
    assert "quick is within" not in reason
    _, reason = budget_pick([row("a", 0.9, 1.0), row("b", 0.8, 2.0)], TEACHER_MS, RATIO)
    assert "noise of the budget line" not in reason  # both clearly within: nothing to flag
    _, reason = budget_pick([row("fast", 0.80, 2.0), row("faithful", 0.90, 5.5)], TEACHER_MS, RATIO, noise=0.0)
    assert "noise" not in reason
    assert "counted in" not in reason  # noise 0: the strict line, as before


def test_a_lead_within_metric_noise_is_still_picked_and_said():
    rows = [row("slower", 0.900, 3.0), row("quicker", 0.897, 1.0)]
    picked, reason = budget_pick(rows, TEACHER_MS, RATIO)
    assert picked["name"] == "slower"
    assert "slower is within metric noise (0.005) of quicker (0.897 at 1 ms): picked for the higher" in reason
    assert "metric noise" not in budget_pick(rows, TEACHER_MS, RATIO, metric_noise=0.001)[1]
    same_speed = [row("a", 0.900, 1.0), row("b", 0.899, 1.0)]
    assert "metric noise" not in budget_pick(same_speed, TEACHER_MS, RATIO)[1]
    tie = [row("a", 0.9, 2.0), row("b", 0.9, 1.0)]
    picked, reason = budget_pick(tie, TEACHER_MS, RATIO)
    assert picked["name"] == "b"
    assert "b is within metric noise (0.005) of a (0.900 at 2 ms): picked as the faster" in reason


@pytest.mark.parametrize("noise", [-0.01, 1.0, 1.5, math.nan])
def test_noise_out_of_range_raises(noise: float):
    with pytest.raises(ValueError, match=r"noise must be a relative latency noise in \[0, 1\)"):
        budget_pick([row("a", 0.9, 1.0)], TEACHER_MS, RATIO, noise=noise)


@pytest.mark.parametrize("metric_noise", [-0.001, math.nan])
def test_metric_noise_out_of_range_raises(metric_noise: float):
    with pytest.raises(ValueError, match=r"metric_noise must be >= 0 \(in \[0, inf\)\)"):
        budget_pick([row("a", 0.9, 1.0)], TEACHER_MS, RATIO, metric_noise=metric_noise)


def test_noise_zero_is_the_strict_filter_then_sort():
    rng = np.random.default_rng(3)
    for _ in range(100):
        rows = [row(str(i), float(rng.choice([0.5, 0.8, 0.9])), float(rng.choice([1.0, 2.0, 2.1, 5.0])))
                for i in range(int(rng.integers(1, 8)))]  # fmt: skip
        fitting = [r for r in rows if r["encode_ms_p50"] <= 2.0]
        if not fitting:
            with pytest.raises(ValueError):
                budget_pick(rows, 30.0, 15.0, noise=0.0)
            continue
        expected = min(fitting, key=lambda r: (-r["recall@10_vs_teacher"], r["encode_ms_p50"]))
        assert budget_pick(rows, 30.0, 15.0, noise=0.0)[0] == expected


def test_latency_noise_is_the_relative_range_of_the_round_p50s():
    assert latency_noise([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 4.0, 5.0]]) == pytest.approx(1.0)
    assert latency_noise([[5.1, 5.3], [5.2]]) == pytest.approx(0.0)
    assert latency_noise([[5.0], [5.5], [5.25]]) == pytest.approx(0.5 / 5.25)
    with pytest.raises(ValueError, match="at least 2 timing rounds"):
        latency_noise([[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least one sample"):
        latency_noise([[1.0], []])
    with pytest.raises(ValueError, match="median p50 must be > 0"):
        latency_noise([[0.0], [0.0]])
