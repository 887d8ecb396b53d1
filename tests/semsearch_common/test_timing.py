"""The timing loop, measured against a scripted clock so the expected figures are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

import semsearch_common.timing as timing


class ScriptedClock:
    """perf_counter that advances by the duration each call says it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ScriptedClock:
    scripted = ScriptedClock()
    monkeypatch.setattr(timing.time, "perf_counter", scripted)
    return scripted


def test_time_each_warms_up_then_times_each_item_alone(clock: ScriptedClock) -> None:
    seen = []

    def call(duration: float) -> float:
        seen.append(duration)
        clock.now += duration
        return duration * 10

    timed = timing.time_each(call, [0.5, 1.0, 2.0], warmup=2)
    assert seen == [0.5, 1.0, 0.5, 1.0, 2.0]  # two warm-up calls, then every item once
    np.testing.assert_allclose(timed.seconds, [0.5, 1.0, 2.0])
    assert timed.results == [5.0, 10.0, 20.0]
    assert timed.percentile_ms(50) == pytest.approx(1000.0)


def test_best_per_item_and_best_per_pass_differ_as_documented(clock: ScriptedClock) -> None:
    passes = iter([[3.0, 1.0, 1.0], [1.0, 3.0, 3.0]])  # pass 1 has the lower median; pass 2 wins item 0
    durations: list[float] = []

    def call(_item: int) -> None:
        if not durations:
            durations.extend(next(passes))
        clock.now += durations.pop(0)

    per_item = timing.time_each(call, [0, 1, 2], warmup=0, repeats=2, best="per_item")
    np.testing.assert_allclose(per_item.seconds, [1.0, 1.0, 1.0])
    passes = iter([[3.0, 1.0, 1.0], [1.0, 3.0, 3.0]])
    per_pass = timing.time_each(call, [0, 1, 2], warmup=0, repeats=2, best="per_pass")
    np.testing.assert_allclose(per_pass.seconds, [3.0, 1.0, 1.0])


def test_time_pass_keeps_the_fastest_run(clock: ScriptedClock) -> None:
    durations = iter([2.0, 0.5, 1.0])
    assert timing.time_pass(lambda: setattr(clock, "now", clock.now + next(durations)), repeats=3) == 0.5


def test_percentile_ms_and_bad_arguments() -> None:
    assert timing.percentile_ms([0.001, 0.002, 0.003], 50) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no timing samples"):
        timing.percentile_ms([], 50)
    with pytest.raises(ValueError, match="per_item or per_pass"):
        timing.time_each(lambda x: x, [1], best="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeats"):
        timing.time_pass(lambda: None, repeats=0)
