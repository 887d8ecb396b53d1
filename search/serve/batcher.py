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

    async def search(self, query: str, k: int, ticket: Ticket) -> Coalesced:
        """Queue one query (503 when the server's queue is full) and wait for its batch's answer. Cancelling the
        wait (deadline, client gone) drops the query if its batch has not started."""
        self.admission.admit()
        item = _Pending(query, k, ticket)
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
        try:
            answers = await anyio.to_thread.run_sync(self._search, [item.query for item in batch], [i.k for i in batch])
        except Exception as err:
            logger.exception("coalesced batch of %d queries on pipeline %s failed", len(batch), self.name)
            answers = [err] * len(batch)
        finally:
            self.admission.finish(len(batch))
            self.admission.release()
        for item, answer in zip(batch, answers, strict=True):
            item.resolve(answer)

    def _search(self, queries: Sequence[str], ks: Sequence[int]) -> list[Coalesced | Exception]:
        """In a worker thread: refuse queries over the token limit, encode the rest together, search per k."""
        problems = [token_limit_error(1, count, self.limits, "query") for count in self.pipeline.count_tokens(queries)]
        ok = [i for i, problem in enumerate(problems) if problem is None]
        answers: dict[int, Coalesced] = {}
        if ok:
            found = self.pipeline.search_each(
                [queries[i] for i in ok], [ks[i] for i in ok], micro_batch=self.limits.micro_batch
            )
            self.batches += 1
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

    async def search(self, name: str, query: str, k: int, ticket: Ticket) -> Coalesced:
        return await self.batchers[name].search(query, k, ticket)

    async def search_all(self, names: Sequence[str], query: str, k: int, ticket: Ticket) -> dict[str, Coalesced]:
        """`query` on each pipeline of `names` (each through its own batcher), one after another, answers in `names`
        order. Not at once: pipelines run together share the cores, so each one's timings would report the contention,
        not the pipeline; one after another costs a lone query the few ms of the small pipelines."""
        return {name: await self.search(name, query, k, ticket) for name in names}
