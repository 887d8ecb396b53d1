"""Rich progress bars for long work (encoding, distillation, index training); `info` holds a rate or a loss.

On a terminal the rich bar is all there is. When the console is not interactive (a redirected log, CI, nohup) rich
shows nothing until the end, so progress is also reported through the `semsearch_common.progress` logger at INFO: at
most one
line per task every `LOG_INTERVAL_SECONDS`, plus one line when the task completes (or when the display stops first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 30.0
"""Least time between two progress log lines for one task (the completion line is never held back)."""


def _clock_text(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour up."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _count_text(value: float) -> str:
    """A count as an integer when it is whole, else with two decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def progress_line(task: Task, *, final: bool = False) -> str:
    """`<description>: <completed>[/<total> (<pct>%)] [<info> ]elapsed <m:ss>[ ETA <m:ss>]`.

    Total and percent are left out when the total is unknown (None). The ETA is the remaining count at the average
    rate so far; it is left out when unknown (no total, nothing done yet, no time elapsed) and on a `final` line.
    """
    elapsed = task.finished_time if task.finished_time is not None else (task.elapsed or 0.0)
    parts = [f"{task.description}: {_count_text(task.completed)}"]
    if task.total is not None:
        percent = 100.0 * task.completed / task.total if task.total else 100.0
        parts[0] += f"/{_count_text(task.total)} ({percent:.1f}%)"
    info = str(task.fields.get("info", "")).strip()
    if info:
        parts.append(info)
    parts.append(f"elapsed {_clock_text(elapsed)}")
    remaining = None if task.total is None else task.total - task.completed
    if not final and remaining is not None and remaining > 0 and task.completed > 0 and elapsed > 0:
        parts.append(f"ETA {_clock_text(remaining * elapsed / task.completed)}")
    return " ".join(parts)


class LoggingProgress(Progress):
    """A rich `Progress` that, when `log_every` is not None, also logs each task's progress.

    A task gets a line on its first change and then at most once every `log_every` seconds (measured with the
    progress clock, `get_time`), one line when it completes, and on `stop` one last line for each task whose
    completion was not logged. With `log_every` None it behaves exactly like `Progress`.
    """

    def __init__(self, *columns: Any, log_every: float | None = None, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.log_every = log_every
        self._last_logged: dict[TaskID, float] = {}
        self._final_logged: set[TaskID] = set()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        """`Progress.update`, then a log line when one is due."""
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """`Progress.advance`, then a log line when one is due."""
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def stop(self) -> None:
        """Stop the display and log one last line for every task whose completion was not logged yet."""
        super().stop()
        if self.log_every is None:
            return
        with self._lock:
            lines = [progress_line(task, final=True) for task in self.tasks if task.id not in self._final_logged]
            self._final_logged.update(task.id for task in self.tasks)
        for line in lines:
            logger.info(line)

    def _maybe_log(self, task_id: TaskID) -> None:
        """Log the task's line when it has just completed or the interval since its last line has passed."""
        if self.log_every is None:
            return
        with self._lock:
            task = self._tasks[task_id]
            if not task.finished:  # e.g. reset by a new total: its completion is due again
                self._final_logged.discard(task_id)
            now = self.get_time()
            if task.finished:
                if task_id in self._final_logged:
                    return
                self._final_logged.add(task_id)
                line = progress_line(task, final=True)
            else:
                last = self._last_logged.get(task_id)
                if last is not None and now - last < self.log_every:
                    return
                line = progress_line(task)
            self._last_logged[task_id] = now
        logger.info(line)


def make_progress(
    enabled: bool = True,
    *,
    log_interval: float | None = None,
    interactive: bool | None = None,
    clock: Callable[[], float] | None = None,
) -> LoggingProgress:
    """A progress display with count, an info field (rate, loss), elapsed time and ETA; off when not `enabled`.

    The display goes to stderr, so a command's machine-readable stdout (`--json`) stays clean while it runs.

    When the console is not interactive, progress also goes to the `semsearch_common.progress` logger (INFO) every
    `log_interval` seconds per task (None: `LOG_INTERVAL_SECONDS`) and on completion; on a terminal nothing is
    logged, and when not `enabled` nothing is shown or logged. `interactive` forces the mode (None: ask the rich
    console); `clock` replaces the monotonic clock used for elapsed time, ETA and throttling.
    """
    progress = LoggingProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
        get_time=clock,
    )
    if interactive is None:
        interactive = progress.console.is_interactive or progress.console.is_jupyter
    if enabled and not interactive:
        progress.log_every = LOG_INTERVAL_SECONDS if log_interval is None else log_interval
    return progress
