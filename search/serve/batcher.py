"""Coalescing (dynamic batching): concurrent single queries to one pipeline share one encoder call.

Each pipeline has one worker task. It waits for a query, optionally `coalesce_wait_ms` more for others (0: it takes
only what is already queued, so a lone client never waits), takes one of the server's work slots (`Admission`),
takes up to `coalesce_max` queued queries, and starts them in a worker thread as one batch: tokens checked per query
(`max_batch_tokens`), encoded together, searched once per distinct k (`Pipeline.search_each`, so every query gets
exactly its uncoalesced hits). Then it forms the next batch, which runs beside the first when a slot is free: model
work is bounded by the slots, never serialised below them. When the slots are busy, new queries queue up: the busier
the server, the larger the batches (up to `coalesce_max`), the fewer encoder calls per query. Each caller gets its
hits, the batch's timings and the batch size.

Queued queries count in `Admission.queued` (503 when full); a caller whose deadline passes or whose client leaves
while queued is dropped from the queue; once its batch runs, the batch finishes for the others.

An idle pipeline skips the queue: `search_now` runs a query at once, in the caller's task, when the pipeline has
nothing running and nothing queued and a slot is free (and `coalesce_wait_ms` is 0), so a lone client pays one
hand-off to a worker thread and no task switches through the worker; queries that arrive meanwhile queue and
coalesce as above. A pipeline whose recent single queries took at most `inline_max_ms` (`query_ms`, an exponential
moving average) skips the thread too and runs in the event loop: the hand-off would cost a large share of its work,
and the loop is held no longer than a request's parsing holds it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.to_thread

from search.pipeline import Pipeline, SearchResult, Timings
from search.serve.admission import (
    CLIENT_GONE,
    Admission,
    ClientGone,
    DeadlineExceeded,
    LimitExceeded,
    Ticket,
    token_limit_error,
)
from search.serve.config import ServerLimits

logger = logging.getLogger(__name__)

QUEUED, RUNNING, ABANDONED = "queued", "running", "abandoned"


@dataclass(frozen=True)
class Coalesced:
    """One query's answer: its hits, the timings of the batch it was encoded in, and that batch's size."""

    result: SearchResult
    batch_size: int


@dataclass(eq=False)
class _Pending:
    query: str
    k: int
    ticket: Ticket
    oversample: float | None = None
    arrived: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event)
    state: str = QUEUED
    answer: Coalesced | None = None
    error: Exception | None = None

    def resolve(self, answer: Coalesced | Exception) -> None:
        if isinstance(answer, Exception):
            self.error = answer
        else:
            self.answer = answer
        self.done.set()


class PipelineBatcher:
    """The queue and worker of one pipeline. `observe(name, timings)` is called per query, `observe_batch(name,
    size)` per coalesced batch (both from the worker thread)."""

    def __init__(
        self,
        name: str,
        pipeline: Pipeline,
        admission: Admission,
        limits: ServerLimits,
        observe: Callable[[str, Timings], None] | None = None,
        observe_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.admission = admission
        self.limits = limits
        self._observe = observe
        self._observe_batch = observe_batch
        self._pending: deque[_Pending] = deque()
        self._arrived = anyio.Event()
        self.batches = 0  # encoder calls made, for tests and logs
        self.query_ms: float | None = None  # moving average of one query's total_ms in a batch of one
        self._running = 0  # batches of this pipeline running now (queued ones and those run at once)

    async def search_now(self, query: str, k: int, oversample: float | None = None) -> Coalesced | None:
        """Run `query` at once when the pipeline is idle (nothing queued for it, a free slot, no coalescing wait);
        None when it is not (call `search`). Cheap pipelines run in the event loop, the others in a worker thread."""
        if self.limits.coalesce_wait_ms > 0 or self._running or self._live() or not self.admission.try_start():
            return None
        self._running += 1
        try:
            inline = self.query_ms is not None and self.query_ms <= self.limits.inline_max_ms
            if inline:
                answer = self._search([query], [k], [oversample])[0]
            else:
                answer = (await anyio.to_thread.run_sync(self._search, [query], [k], [oversample]))[0]
        finally:
            self._running -= 1
            self.admission.finish()
            self.admission.release()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def search(self, query: str, k: int, ticket: Ticket, oversample: float | None = None) -> Coalesced:
        """Queue one query (503 when the server's queue is full) and wait for its batch's answer. Cancelling the
        wait (deadline, client gone) drops the query if its batch has not started."""
        self.admission.admit()
        item = _Pending(query, k, ticket, oversample)
        self._pending.append(item)
        self._arrived.set()
        try:
            await item.done.wait()
        finally:
            if item.state == QUEUED:
                item.state = ABANDONED
                self.admission.abandon()
        if item.error is not None:
            raise item.error
        assert item.answer is not None
        return item.answer

    async def run(self) -> None:
        """The worker loop (runs until cancelled): each batch takes a slot and runs while the next one forms."""
        async with anyio.create_task_group() as running:
            while True:
                await self._wait_for(1)
                wait_s = self.limits.coalesce_wait_ms / 1e3
                if wait_s > 0:
                    with anyio.move_on_after(max(0.0, self._pending[0].arrived + wait_s - time.monotonic())):
                        await self._wait_for(self.limits.coalesce_max)
                await self.admission.acquire()
                batch = self._take()
                if batch:
                    running.start_soon(self._run, batch)
                else:
                    self.admission.release()

    async def _wait_for(self, count: int) -> None:
        """Until `count` live queries are queued."""
        while self._live() < count:
            self._arrived = anyio.Event()
            await self._arrived.wait()

    def _live(self) -> int:
        while self._pending and self._pending[0].state != QUEUED:  # drop the abandoned at the head
            self._pending.popleft()
        return sum(item.state == QUEUED for item in self._pending)

    def _take(self) -> list[_Pending]:
        """Up to `coalesce_max` queued queries, oldest first; those whose ticket stopped are answered at once."""
        batch: list[_Pending] = []
        while self._pending and len(batch) < self.limits.coalesce_max:
            item = self._pending.popleft()
            if item.state != QUEUED:
                continue
            if item.ticket.stopped:
                item.state = ABANDONED
                self.admission.abandon()
                gone = item.ticket.reason == CLIENT_GONE
                item.resolve(ClientGone(CLIENT_GONE) if gone else DeadlineExceeded(item.ticket.timeout_message()))
                continue
            item.state = RUNNING
            batch.append(item)
        self.admission.start(len(batch))
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        self._running += 1
        try:
            answers = await anyio.to_thread.run_sync(
                self._search, [i.query for i in batch], [i.k for i in batch], [i.oversample for i in batch]
            )
        except Exception as err:
            logger.exception("coalesced batch of %d queries on pipeline %s failed", len(batch), self.name)
            answers = [err] * len(batch)
        finally:
            self._running -= 1
            self.admission.finish(len(batch))
            self.admission.release()
        for item, answer in zip(batch, answers, strict=True):
            item.resolve(answer)

    def _search(
        self, queries: Sequence[str], ks: Sequence[int], oversamples: Sequence[float | None]
    ) -> list[Coalesced | Exception]:
        """In a worker thread (in the event loop for a pipeline under `inline_max_ms`): refuse queries over the token
        limit, encode the rest together (one encoder call per distinct oversample), search per k; keeps `query_ms`
        from batches of one."""
        if self.pipeline.most_tokens(1) <= self.limits.max_batch_tokens:  # no query can pass the limit
            problems: list[LimitExceeded | None] = [None] * len(queries)
        else:
            counts = self.pipeline.count_tokens(queries)
            problems = [token_limit_error(1, count, self.limits, "query") for count in counts]
        answers: dict[int, Coalesced] = {}
        for oversample in dict.fromkeys(oversamples):
            ok = [i for i, problem in enumerate(problems) if problem is None and oversamples[i] == oversample]
            if not ok:
                continue
            found = self.pipeline.search_each(
                [queries[i] for i in ok], [ks[i] for i in ok], micro_batch=self.limits.micro_batch,
                oversample=oversample,
            )  # fmt: skip
            self.batches += 1
            if len(ok) == 1 and oversample is None:
                ms = found.timings.total_ms
                self.query_ms = ms if self.query_ms is None else 0.8 * self.query_ms + 0.2 * ms
            for i, hits in zip(ok, found.hits, strict=True):
                answers[i] = Coalesced(SearchResult(hits, found.timings), len(ok))
            if self._observe_batch is not None:
                self._observe_batch(self.name, len(ok))
            if self._observe is not None:
                for _ in ok:
                    self._observe(self.name, found.timings)
        return [answers[i] if problem is None else problem for i, problem in enumerate(problems)]


class Batchers:
    """One `PipelineBatcher` per pipeline; `start` runs their workers in a task group (the app's lifespan)."""

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        admission: Admission,
        limits: ServerLimits,
        observe: Callable[[str, Timings], None] | None = None,
        observe_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.admission = admission
        self.batchers = {
            name: PipelineBatcher(name, pipeline, admission, limits, observe, observe_batch)
            for name, pipeline in pipelines.items()
        }

    def start(self, group: anyio.abc.TaskGroup) -> None:
        for batcher in self.batchers.values():
            group.start_soon(batcher.run, name=f"batcher:{batcher.name}")

    async def search_now(self, name: str, query: str, k: int, oversample: float | None = None) -> Coalesced | None:
        return await self.batchers[name].search_now(query, k, oversample)

    async def search(self, name: str, query: str, k: int, ticket: Ticket, oversample: float | None = None) -> Coalesced:
        """`query` at once when its pipeline is idle, else through the pipeline's queue (coalesced)."""
        now = await self.batchers[name].search_now(query, k, oversample)
        return now if now is not None else await self.batchers[name].search(query, k, ticket, oversample)

    async def search_all(
        self, names: Sequence[str], query: str, k: int, ticket: Ticket, oversample: float | None = None
    ) -> dict[str, Coalesced]:
        """`query` on each pipeline of `names` (each through its own batcher), one after another, answers in `names`
        order. Not at once: pipelines run together share the cores, so each one's timings would report the contention,
        not the pipeline; one after another costs a lone query the few ms of the small pipelines."""
        return {name: await self.search(name, query, k, ticket, oversample) for name in names}
