"""Progress reporting through logging when the console is not interactive, driven by a scripted clock."""

from __future__ import annotations

import logging

import pytest

import semsearch_common.progress as progress_module
from semsearch_common.progress import make_progress

LOGGER = "semsearch_common.progress"


class ScriptedClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def test_every_update_logs_count_percent_info_elapsed_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = ScriptedClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=False, log_interval=0, clock=clock) as progress:
            task = progress.add_task("encoding", total=200, info="")
            clock.now += 30
            progress.update(task, advance=50, info="12.0 docs/s")
            clock.now += 30
            progress.advance(task, 50)
            clock.now += 15
            progress.update(task, completed=200, info="done fast")
    assert lines(caplog) == [
        "encoding: 50/200 (25.0%) 12.0 docs/s elapsed 0:30 ETA 1:30",
        "encoding: 100/200 (50.0%) 12.0 docs/s elapsed 1:00 ETA 1:00",
        "encoding: 200/200 (100.0%) done fast elapsed 1:15",
    ]


def test_fast_updates_within_the_interval_log_only_the_first_and_the_completion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ScriptedClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=False, log_interval=30, clock=clock) as progress:
            task = progress.add_task("teacher targets", total=1000, info="")
            for _ in range(1000):
                clock.now += 1 / 64  # exact in binary: 1000 steps take 15.625 s
                progress.update(task, advance=1)
    assert lines(caplog) == [
        "teacher targets: 1/1000 (0.1%) elapsed 0:00 ETA 0:15",
        "teacher targets: 1000/1000 (100.0%) elapsed 0:15",
    ]


def test_a_line_is_due_again_once_the_interval_has_passed(caplog: pytest.LogCaptureFixture) -> None:
    clock = ScriptedClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=False, log_interval=10, clock=clock) as progress:
            task = progress.add_task("fit", total=100, info="")
            for _ in range(25):  # one step a second: lines at 1 s, 11 s and 21 s
                clock.now += 1
                progress.advance(task)
    assert [line.split(" elapsed")[0] for line in lines(caplog)] == [
        "fit: 1/100 (1.0%)",
        "fit: 11/100 (11.0%)",
        "fit: 21/100 (21.0%)",
        "fit: 25/100 (25.0%)",  # the display stopped before completion: one last line, without an ETA
    ]
    assert "ETA" not in lines(caplog)[-1]


def test_the_default_interval_is_the_module_constant(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_SECONDS", 5.0)
    clock = ScriptedClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=False, clock=clock) as progress:
            task = progress.add_task("index", total=10, info="")
            for _ in range(9):
                clock.now += 1
                progress.advance(task)
            progress.advance(task)
    assert [line.split(" elapsed")[0] for line in lines(caplog)] == [
        "index: 1/10 (10.0%)",
        "index: 6/10 (60.0%)",
        "index: 10/10 (100.0%)",
    ]


def test_unknown_total_logs_the_count_without_percent_or_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = ScriptedClock()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=False, log_interval=0, clock=clock) as progress:
            task = progress.add_task("training", total=None, info="")
            clock.now += 65
            progress.update(task, advance=3, info="loss 0.5")
    assert lines(caplog) == [
        "training: 3 loss 0.5 elapsed 1:05",
        "training: 3 loss 0.5 elapsed 1:05",  # the final line when the display stops
    ]


def test_a_terminal_gets_the_bar_and_no_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(interactive=True, log_interval=0) as progress:
            task = progress.add_task("encoding", total=3, info="")
            progress.update(task, advance=1)
            progress.advance(task, 2)
        assert progress.tasks[0].completed == 3
    assert lines(caplog) == []


def test_disabled_progress_is_silent_even_off_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(False, interactive=False, log_interval=0) as progress:
            task = progress.add_task("encoding", total=3, info="")
            progress.update(task, advance=1)
            progress.advance(task, 2)
    assert lines(caplog) == []


def test_without_a_forced_mode_a_captured_console_counts_as_not_interactive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with make_progress(log_interval=0) as progress:
            interactive = progress.console.is_interactive or progress.console.is_jupyter
            task = progress.add_task("encoding", total=2, info="")
            progress.advance(task, 2)
    assert lines(caplog) == ([] if interactive else ["encoding: 2/2 (100.0%) elapsed 0:00"])


def test_the_display_goes_to_stderr_so_stdout_stays_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    with make_progress(interactive=False, log_interval=0.0) as progress:
        task = progress.add_task("encoding", total=3, info="")
        for _ in range(3):
            progress.advance(task)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "encoding" in captured.err
