"""The side-by-side evaluation behind `/evaluation`, run as a background job so it never blocks a search.

One job at a time, on its own daemon thread: started at start-up (`--evaluate-on-startup`) or by `POST /evaluation`,
never by a read. While it runs, readers get its progress; when it is done, the summary; when it failed, the failure
(the exception, which the routes map to a status) until the next start, so a missing dataset is not reloaded and
re-hashed on every call. The lock guards only the state transitions, never the evaluation.

Thread budget: the job runs at a lower priority (niceness 10 on its thread, Linux), does its model work one query at a
time on that one thread (it never batches), and caps FAISS's OpenMP team at one thread for every search it makes
(OpenMP counts are per calling thread, so this reaches no request thread); it never changes torch's process-wide count.
The encoders' intra-op pools are shared with the requests, so while the teacher evaluates, searches compete with it.
It does not pass through the request admission queue: it is one extra unit of work at most, on top of
`max_concurrency`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from indexes.faiss_index import openmp_threads
from search.evaluation.side_by_side import EvaluationUnavailable

logger = logging.getLogger(__name__)

JobStatus = Literal["idle", "running", "done", "failed"]
JOB_OPENMP_THREADS = 1
Compute = Callable[[Callable[[str, int, int], None]], dict[str, Any]]


JOB_NICENESS = 10


def lower_priority() -> None:
    """Make the calling thread (Linux: a thread is a schedulable task) yield the cores to request threads; best effort:
    a no-op where per-thread priorities are not supported."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
    except (AttributeError, OSError):
        pass


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobState:
    """A snapshot of the job: what it is doing, and its result or failure once it has one."""

    status: JobStatus = "idle"
    stage: str = ""
    done: int = 0
    total: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    compute_seconds: float | None = None
    summary: dict[str, Any] | None = None
    failure: Exception | None = None  # why the last run failed: an `EvaluationUnavailable`, or an unexpected error
    runs: int = 0  # jobs started since the server started

    def progress(self) -> dict[str, Any]:
        return {"stage": self.stage, "done": self.done, "total": self.total}


class EvaluationJob:
    """Runs `compute(progress)` on a background thread, one run at a time, and keeps its last outcome."""

    def __init__(self, compute: Compute, on_change: Callable[[bool], None] | None = None) -> None:
        self._compute = compute
        self._on_change = on_change or (lambda running: None)
        self._lock = threading.Lock()
        self._state = JobState()
        self._thread: threading.Thread | None = None

    def state(self) -> JobState:
        with self._lock:
            return self._state

    def start(self) -> JobState:
        """Start a run unless one is running; return the state (the running one either way)."""
        with self._lock:
            if self._state.status == "running":
                return self._state
            self._state = JobState(status="running", stage="starting", started_at=_now(), runs=self._state.runs + 1)
            self._thread = threading.Thread(target=self._run, name="evaluation-job", daemon=True)
            self._thread.start()
            self._on_change(True)
            return self._state

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the running job ends (tests and start-up logging); the state afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state()

    def _progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._state = replace(self._state, stage=stage, done=done, total=total)

    def _run(self) -> None:
        lower_priority()
        started = time.perf_counter()
        outcome: dict[str, Any]
        try:
            with openmp_threads(JOB_OPENMP_THREADS):
                summary = self._compute(self._progress)
            outcome = {"status": "done", "summary": summary, "stage": "done"}
            logger.info("evaluation computed in %.1f s", time.perf_counter() - started)
        except EvaluationUnavailable as err:
            outcome = {"status": "failed", "failure": err.with_traceback(None)}
            logger.warning("no evaluation: %s", err)
        except Exception as err:  # noqa: BLE001 - a failed evaluation must be reported by /evaluation, not kill the thread
            logger.exception("the evaluation job failed")
            outcome = {"status": "failed", "failure": err.with_traceback(None)}
        with self._lock:
            self._state = replace(
                self._state, finished_at=_now(), compute_seconds=time.perf_counter() - started, **outcome
            )
        self._on_change(False)
