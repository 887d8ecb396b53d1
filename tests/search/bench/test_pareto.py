import random

import pytest

from search.bench.pareto import dominates, frontier, pareto_mask


def brute_force_mask(points: list[tuple[float, float]]) -> list[bool]:
    """The O(n^2) definition, written out independently: kept unless another point has quality >= and cost <=,
    strictly better on one of the two."""
    return [not any(q >= p_q and c <= p_c and (q > p_q or c < p_c) for q, c in points) for p_q, p_c in points]


def test_pareto_on_hand_made_points():
    points = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.8, 5.0), (0.95, 20.0), (0.7, 5.0), (0.5, 1.0), (0.9, 11.0)]
    # (0.85, 12) loses to (0.9, 10); (0.7, 5) to (0.8, 5); (0.9, 11) to (0.9, 10); equal points are both kept
    assert pareto_mask(points) == [True, True, False, True, True, False, True, False]
    assert frontier(points) == [(0.5, 1.0), (0.8, 5.0), (0.8, 5.0), (0.9, 10.0), (0.95, 20.0)]
    assert pareto_mask([]) == [] and frontier([]) == []
    assert pareto_mask([(0.3, 2.0)]) == [True]


@pytest.mark.parametrize("bad", [(float("nan"), 1.0), (1.0, float("nan"))])
def test_pareto_rejects_nan(bad):
    with pytest.raises(ValueError, match="must be numbers"):
        pareto_mask([(0.5, 1.0), bad])


def test_dominates_is_strict_on_one_side():
    assert dominates((0.9, 1.0), (0.8, 1.0)) and dominates((0.8, 0.5), (0.8, 1.0))
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
