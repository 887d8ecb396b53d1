"""Where a `/search` request's milliseconds go inside the server: the app, wrapped with timestamps, served by uvicorn.

    PYTHONPATH=. python benchmarks/reliability/stage_timer.py --pipeline compressed=runs/scifact/compressed
    # then, from another shell, one client: e.g. the harness's latency phase, or any keep-alive client

Every `--every` answered `/search` requests it prints the medians (ms) of: `before_search_now` (ASGI entry to the
route's call into the batcher: middlewares, routing, body, validation, shape checks), `to_work` (to the start of the
pipeline's work: the hand-off to a worker thread, ~0 in the event loop), `work` (`PipelineBatcher._search`: the
pipeline's total plus its bookkeeping), `back` (to the route again), `answer` (the response model and its JSON),
`to_send`, `send` (uvicorn writing the answer), `after_send`, and `asgi` (the whole). It wraps the product's
functions by monkeypatching (an investigation tool, not a server to run).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import Any

import uvicorn

import search.serve.app as app_module
import search.serve.batcher as batcher_module
from search.serve.config import Security, ServerConfig, ServerLimits
from search.sources import parse_sources

STAGES = ("before_search_now", "to_work", "work", "back", "answer", "to_send", "send", "after_send", "asgi")


def instrumented_app(config: ServerConfig, every: int) -> Any:
    """The app of `config` with timestamps around each stage of `/search`; prints medians every `every` requests."""
    marks: dict[str, float] = {}
    spans: dict[str, list[float]] = collections.defaultdict(list)

    def stamp(name: str) -> None:
        marks[name] = time.perf_counter()

    search_now = batcher_module.Batchers.search_now
    run_search = batcher_module.PipelineBatcher._search
    json_answer = app_module.json_answer

    async def timed_search_now(self: Any, name: str, query: str, k: int) -> Any:
        stamp("call")
        found = await search_now(self, name, query, k)
        stamp("returned")
        return found

    def timed_search(self: Any, queries: Any, ks: Any) -> Any:
        stamp("work_start")
        answers = run_search(self, queries, ks)
        stamp("work_end")
        return answers

    def timed_answer(model: Any) -> Any:
        stamp("answer_start")
        response = json_answer(model)
        stamp("answer_end")
        return response

    batcher_module.Batchers.search_now = timed_search_now
    batcher_module.PipelineBatcher._search = timed_search
    app_module.json_answer = timed_answer
    inner = app_module.create_app(config, preload=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                stamp("send_start")
            await send(message)
            if message["type"] == "http.response.body":
                stamp("send_end")

        await inner(scope, receive, timed_send)
        if scope["type"] != "http" or scope["path"] != "/search" or "work_end" not in marks:
            return
        ended = time.perf_counter()
        m = marks
        for stage, (a, b) in {
            "before_search_now": (started, m["call"]), "to_work": (m["call"], m["work_start"]),
            "work": (m["work_start"], m["work_end"]), "back": (m["work_end"], m["returned"]),
            "answer": (m["returned"], m["answer_end"]), "to_send": (m["answer_end"], m["send_start"]),
            "send": (m["send_start"], m["send_end"]), "after_send": (m["send_end"], ended), "asgi": (started, ended),
        }.items():  # fmt: skip
            spans[stage].append((b - a) * 1e3)
        if len(spans["asgi"]) % every == 0:
            medians = {stage: round(statistics.median(spans[stage][-every:]), 3) for stage in STAGES}
            print(f"last {every} /search requests, median ms: {medians}", flush=True)
        marks.clear()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", action="append", required=True, help="NAME=DIR, repeatable")
    parser.add_argument("--port", type=int, default=8813)
    parser.add_argument("--inline-max-ms", type=float, default=ServerLimits().inline_max_ms)
    parser.add_argument("--every", type=int, default=300, help="requests per printed line")
    args = parser.parse_args()
    config = ServerConfig(
        pipelines=tuple(parse_sources(args.pipeline)),
        security=Security(host="127.0.0.1"),
        limits=ServerLimits(inline_max_ms=args.inline_max_ms),
    )
    uvicorn.run(instrumented_app(config, args.every), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
