"""50 concurrent `GET /evaluation` (after one `POST /evaluation` starts it in the server) while `/health` is polled
every 20 ms, until the evaluation has finished: does computing the evaluation slow the rest of the API?"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np

JSON = {"Content-Type": "application/json"}
MAX_HEALTH_MS = 100.0  # the bound on /health latency during the storm


async def _storm(base_url: str, calls: int, poll_s: float, timeout_s: float, health_timeout_s: float) -> dict[str, Any]:
    health_ms: list[float] = []
    health_status: Counter[int | str] = Counter()
    limits = httpx.Limits(max_connections=calls + 4)
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s) as client,
        httpx.AsyncClient(base_url=base_url, timeout=health_timeout_s) as health,
    ):
        await client.post("/evaluation", json={}, headers=JSON)  # start a fresh evaluation
        done = asyncio.Event()

        async def poll_health() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    health_status[(await health.get("/health")).status_code] += 1
                except httpx.TimeoutException:
                    health_status["timeout"] += 1
                except httpx.HTTPError:
                    health_status["failed"] += 1
                health_ms.append((time.perf_counter() - started) * 1e3)
                await asyncio.sleep(poll_s)

        async def get_metrics() -> int | str:
            try:
                return (await client.get("/evaluation")).status_code
            except httpx.TimeoutException:
                return "timeout"
            except httpx.HTTPError as err:
                return f"failed: {type(err).__name__}"

        poller = asyncio.create_task(poll_health())
        started = time.perf_counter()
        statuses = await asyncio.gather(*(get_metrics() for _ in range(calls)))
        final = statuses[-1] if statuses else None
        while final == 202 and time.perf_counter() - started < timeout_s:  # on while the evaluation runs (202)
            await asyncio.sleep(0.25)
            final = await get_metrics()
        job_seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)
        done.set()
        await poller
        elapsed = time.perf_counter() - started
    ms = np.asarray(health_ms)
    return {
        "metrics_calls": calls,
        "metrics_statuses": dict(Counter(map(str, statuses))),
        "storm_seconds": round(elapsed, 2),
        "evaluation_seconds": round(job_seconds, 2),  # until GET /evaluation stopped answering 202, or the time bound
        "metrics_final_status": str(final),  # 202: the evaluation was still running when the storm's time was up
        "health_polls": int(ms.size),
        "health_statuses": {str(key): value for key, value in health_status.items()},
        "health_p50_ms": round(float(np.percentile(ms, 50)), 2) if ms.size else None,
        "health_p99_ms": round(float(np.percentile(ms, 99)), 2) if ms.size else None,
        "health_max_ms": round(float(ms.max()), 2) if ms.size else None,
    }


def run_storm(
    base_url: str, calls: int = 50, poll_s: float = 0.02, timeout_s: float = 60.0, health_timeout_s: float = 5.0
) -> dict[str, Any]:
    """The storm, bounded by `timeout_s` (an /evaluation call, and the wait for the evaluation to finish); ok when every
    /health poll answered 200 within MAX_HEALTH_MS."""
    result = asyncio.run(_storm(base_url, calls, poll_s, timeout_s, health_timeout_s))
    result["ok"] = (
        result["health_max_ms"] is not None
        and result["health_max_ms"] < MAX_HEALTH_MS
        and set(result["health_statuses"]) == {"200"}
    )
    return result
