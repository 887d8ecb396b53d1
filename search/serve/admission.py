"""Bounded work per request and per server: size checks, a concurrency limit with a bounded queue, deadlines.

- `check_shape` (hits and rescore candidates) and `check_tokens` refuse a request that would do too much work,
  before any model work, with `LimitExceeded` (422) naming the limit and the value.
- `Admission`: at most `max_concurrency` units of work at once (a /search/batch request, or one coalesced batch of
  single queries); at most `max_queue` requests waiting, more are refused at once with `ServerBusy` (503 +
  Retry-After). Waiting is async: a queued request holds no worker thread.
- `Ticket`: a request's deadline and cancel flag. The event loop cancels it (client gone); the worker thread checks it
  between micro-batches (`Ticket.check`, a `search.pipeline.Checkpoint`) and stops there.
- `watched`: awaits a request's work under its deadline (`DeadlineExceeded`, 504) while watching for the client to
  disconnect (`ClientGone`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

import anyio

from search.serve.config import ServerLimits

logger = logging.getLogger(__name__)

T = TypeVar("T")
DISCONNECT_POLL_S = 0.05  # how often a running request checks whether its client is still there
CLIENT_GONE = "the client disconnected"
DEADLINE = "the request passed its deadline"


class LimitExceeded(ValueError):
    """A request over a work limit (422); `field` is the body field to blame, the message names limit and value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotApplicable(ValueError):
    """A request option the pipeline cannot honour (422), e.g. `oversample` on an index without a vector file;
    `field` is the body field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ServerBusy(Exception):
    """The queue is full (503); `retry_after_s` says when to try again."""

    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The request passed its deadline (504); its work stopped at the next micro-batch boundary."""


class ClientGone(Exception):
    """The client disconnected; its work stopped at the next micro-batch boundary (nobody reads the answer)."""


class Shaped(Protocol):
    """What `check_shape` and `check_tokens` need of a pipeline (`search.pipeline.Pipeline` has it)."""

    def rescore_candidates(self, k: int, oversample: float | None = None) -> int: ...

    def count_tokens(self, queries: Sequence[str]) -> list[int]: ...

    def most_tokens(self, queries: int) -> int: ...


def how_to_raise(name: str) -> str:
    return f"(or start the server with --limit {name}=N)"


def check_shape(
    pipeline: Shaped, queries: int, k: int, limits: ServerLimits, field: str = "k", oversample: float | None = None
) -> None:
    """Refuse `queries` x `k` hits over `max_batch_hits`, queries x k x (k_factor or oversample) candidates re-ranked
    exactly over `max_rescore_candidates`, and an `oversample` the pipeline cannot take (`NotApplicable`). Cheap: no
    tokenising."""
    try:
        per_query = pipeline.rescore_candidates(k, oversample)
    except ValueError as err:
        raise NotApplicable("oversample", str(err)) from err
    hits = queries * k
    if hits > limits.max_batch_hits:
        raise LimitExceeded(
            field,
            f"{queries} queries x k={k} = {hits} hits is over max_batch_hits={limits.max_batch_hits}: send fewer "
            f"queries or a smaller k {how_to_raise('max_batch_hits')}",
        )
    candidates = queries * per_query
    if candidates > limits.max_rescore_candidates:
        raise LimitExceeded(
            field,
            f"{queries} queries x {per_query} candidates each (k={k} x k_factor or oversample) = {candidates} "
            f"candidates to re-rank is over max_rescore_candidates={limits.max_rescore_candidates}: send fewer "
            f"queries or a smaller k {how_to_raise('max_rescore_candidates')}",
        )


def check_tokens(pipeline: Shaped, queries: Sequence[str], limits: ServerLimits, field: str = "queries") -> None:
    """Refuse queries whose tokens (each truncated to the encoder's maximum length) total over `max_batch_tokens`.
    Tokenises a bounded prefix of each query, runs no model; tokenises nothing when so few queries cannot pass the
    limit even at the encoder's maximum length each."""
    if pipeline.most_tokens(len(queries)) <= limits.max_batch_tokens:
        return
    problem = token_limit_error(len(queries), sum(pipeline.count_tokens(queries)), limits, field)
    if problem is not None:
        raise problem


def token_limit_error(queries: int, total: int, limits: ServerLimits, field: str) -> LimitExceeded | None:
    """The refusal of `queries` holding `total` tokens, or None within `max_batch_tokens`."""
    if total <= limits.max_batch_tokens:
        return None
    held = f"{queries} queries hold" if queries != 1 else "the query holds"
    return LimitExceeded(
        field,
        f"{held} {total} tokens (each cut to the encoder's maximum length), over max_batch_tokens="
        f"{limits.max_batch_tokens}: send fewer or shorter queries {how_to_raise('max_batch_tokens')}",
    )


class Ticket:
    """One request's deadline (monotonic clock) and cancel flag, shared by the event loop and a worker thread."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self.deadline = clock() + timeout_s
        self._reason: str | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock())

    def cancel(self, reason: str) -> None:
        """Ask the work to stop at its next checkpoint (the first reason given wins)."""
        with self._lock:
            if self._reason is None:
                self._reason = reason

    @property
    def reason(self) -> str | None:
        """Why the work must stop: CLIENT_GONE, DEADLINE, or None while it may go on."""
        if self._reason is None and self._clock() >= self.deadline:
            self.cancel(DEADLINE)
        return self._reason

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def check(self) -> None:
        """Raise `ClientGone` or `DeadlineExceeded` when the work must stop (called between micro-batches)."""
        reason = self.reason
        if reason == CLIENT_GONE:
            raise ClientGone(CLIENT_GONE)
        if reason is not None:
            raise DeadlineExceeded(self.timeout_message())

    def timeout_message(self) -> str:
        return (
            f"the request passed its deadline of {self.timeout_s:g} s (request_timeout_s) and its work was stopped: "
            f"send less work per request, or retry when the server is less busy {how_to_raise('request_timeout_s')}"
        )


class Admission:
    """A server-wide concurrency limit with a bounded queue; counts what waits and what runs.

    `queued`: requests admitted and not started (waiting for a slot, or for their pipeline's batcher); `in_flight`:
    requests whose work runs. A slot is one unit of work: a /search/batch request, or a coalesced batch of single
    queries (`search.serve.batcher`). Event-loop only: every method runs in the event loop thread.
    """

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.queued = 0
        self.in_flight = 0
        self._slots = anyio.Semaphore(limits.max_concurrency)

    def admit(self, requests: int = 1) -> None:
        """Count `requests` as queued, or refuse them all with `ServerBusy` when `max_queue` already wait."""
        if self.queued >= self.limits.max_queue:
            raise ServerBusy(
                self.limits.retry_after_s,
                f"the server is busy: {self.in_flight} requests running and {self.queued} waiting "
                f"(max_concurrency={self.limits.max_concurrency}, max_queue={self.limits.max_queue}); retry after "
                f"{self.limits.retry_after_s} s",
            )
        self.queued += requests

    def abandon(self, requests: int = 1) -> None:
        """Queued requests that left before starting (deadline, client gone)."""
        self.queued -= requests

    def start(self, requests: int = 1) -> None:
        self.queued -= requests
        self.in_flight += requests

    def finish(self, requests: int = 1) -> None:
        self.in_flight -= requests

    def try_start(self) -> bool:
        """Take a free slot and count one request in flight, without waiting and without queueing: False when every
        slot is busy (then queue with `admit`). `finish` and `release` end it."""
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            return False
        self.in_flight += 1
        return True

    async def acquire(self) -> None:
        """Take one of the `max_concurrency` slots, waiting for it (FIFO, without a thread); `release` gives it back."""
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    @asynccontextmanager
    async def request(self, ticket: Ticket) -> AsyncIterator[None]:
        """A whole request as one unit of work: admitted (503 when the queue is full), waits for a slot until its
        deadline (504), then counts as in flight while the block runs."""
        self.admit()
        try:
            with anyio.fail_after(ticket.remaining()):
                await self._slots.acquire()
        except TimeoutError:
            self.abandon()
            ticket.cancel(DEADLINE)
            raise DeadlineExceeded(ticket.timeout_message()) from None
        except BaseException:
            self.abandon()
            raise
        self.start()
        try:
            yield
        finally:
            self.finish()
            self._slots.release()


class Disconnectable(Protocol):
    """What `watched` needs of a request (Starlette's `Request` has it)."""

    async def is_disconnected(self) -> bool: ...


async def _cancel_when_gone(request: Disconnectable, ticket: Ticket, scope: anyio.CancelScope, poll_s: float) -> None:
    while not ticket.stopped:
        await anyio.sleep(poll_s)
        if await request.is_disconnected():
            logger.info("client disconnected: stopping its work at the next micro-batch")
            ticket.cancel(CLIENT_GONE)
            scope.cancel()
            return


async def watched(
    ticket: Ticket,
    work: Callable[[], Awaitable[T]],
    request: Disconnectable | None = None,
    poll_s: float = DISCONNECT_POLL_S,
) -> T:
    """Await `work()` until the ticket's deadline (`DeadlineExceeded`) while watching `request` for a disconnect
    (`ClientGone`); either cancels the ticket so the work's checkpoints stop it.

    Work in a worker thread (`anyio.to_thread.run_sync`, not abandoned) cannot be interrupted: it is awaited until
    its next checkpoint, so its slot stays held until the thread has really stopped. Work that finishes is
    returned even when the deadline passed meanwhile.
    """
    outcome: list[T] = []
    errors: list[Exception] = []
    with anyio.move_on_after(ticket.remaining()) as deadline_scope:
        async with anyio.create_task_group() as group:
            if request is not None:
                group.start_soon(_cancel_when_gone, request, ticket, group.cancel_scope, poll_s)
            try:
                outcome.append(await work())
            except Exception as err:  # raised as itself below, not wrapped in the task group's ExceptionGroup
                errors.append(err)
            group.cancel_scope.cancel()
    if errors:
        raise errors[0]
    if outcome:
        return outcome[0]
    if ticket.reason == CLIENT_GONE:
        raise ClientGone(CLIENT_GONE)
    if deadline_scope.cancelled_caught or ticket.stopped:
        ticket.cancel(DEADLINE)
        raise DeadlineExceeded(ticket.timeout_message())
    raise RuntimeError("request work ended without a result")  # pragma: no cover - cancelled from outside
