"""Hostile-but-fair requests: each must be refused (413/422/415/400, or 503 when full) in under a second, without
the server's memory growing by 200 MB. A server that a case leaves wedged (no answer in time, /health silent, or its
memory still up) is restarted so the next case meets a fresh one; the row says so."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from reliability_harness.rss import MB, rss_bytes, sample_rss

logger = logging.getLogger(__name__)

JSON = "application/json"
MAX_SECONDS = 1.0  # the bound on answering a hostile request
MAX_GROWTH_MB = 200.0  # the bound on the server's memory growth per hostile request
BUSY = 503  # a full server refusing work is a correct answer to a heavy request too


class Target(Protocol):
    """The server under test, as the hostile cases need it (`ServerProcess` is one)."""

    @property
    def pid(self) -> int: ...

    def healthy(self, timeout_s: float = 2.0) -> bool: ...

    def restart(self) -> float: ...


@dataclass(frozen=True)
class HostileCase:
    """One request: what it is, how to build its body, and the statuses that count as a correct refusal."""

    name: str
    expected: tuple[int, ...]
    body: Callable[[str], bytes]  # pipeline -> raw body
    path: str = "/search/batch"
    content_type: str = JSON
    host: str | None = None  # a Host header to send instead of the right one


def _batch(n: int, chars: int, k: int) -> Callable[[str], bytes]:
    def body(pipeline: str) -> bytes:
        word = "inflammation "
        query = (word * (chars // len(word) + 1))[:chars]
        return json.dumps(
            {"queries": [f"{i} {query}"[:chars] for i in range(n)], "k": k, "pipeline": pipeline}
        ).encode()

    return body


def _raw(text: str) -> Callable[[str], bytes]:
    return lambda pipeline: text.replace("PIPELINE", pipeline).encode()


SEARCH = '{"query": "heart", "pipeline": "PIPELINE"}'
CASES = (
    HostileCase("256 queries x 10,000 chars, k=1000 (2.6 MB)", (413, BUSY), _batch(256, 10_000, 1000)),
    HostileCase("256 queries x 3,000 chars, k=1000 (under 1 MiB; hits)", (422, BUSY), _batch(256, 3_000, 1000)),
    HostileCase("100 queries x 8,000 chars, k=10 (tokens)", (422, BUSY), _batch(100, 8_000, 10)),
    HostileCase("256 short queries, k=1000 (58 MB answer)", (422, BUSY), _batch(256, 20, 1000)),
    HostileCase("20 MB body", (413,), _raw('{"queries": ["' + "x" * (20 << 20) + '"], "pipeline": "PIPELINE"}')),
    HostileCase("k = NaN", (422,), _raw('{"query": "heart", "k": NaN, "pipeline": "PIPELINE"}'), path="/search"),
    HostileCase("k = 1e400", (422,), _raw('{"query": "heart", "k": 1e400, "pipeline": "PIPELINE"}'), path="/search"),
    HostileCase("batch k = Infinity", (422,), _raw('{"queries": ["heart"], "k": Infinity, "pipeline": "PIPELINE"}')),
    HostileCase("compare k = -Infinity", (422,), _raw('{"query": "heart", "k": -Infinity}'), path="/compare"),
    HostileCase("lone surrogate", (422,), _raw('{"query": "\\ud800", "pipeline": "PIPELINE"}'), path="/search"),
    HostileCase("batch lone surrogate", (422,), _raw('{"queries": ["a\\udfff"], "pipeline": "PIPELINE"}')),
    HostileCase(
        "zero-width query", (422,), _raw('{"query": "\\u200b\\u200b", "pipeline": "PIPELINE"}'), path="/search"
    ),
    HostileCase("k = true", (422,), _raw('{"query": "heart", "k": true, "pipeline": "PIPELINE"}'), path="/search"),
    HostileCase("cross-site text/plain POST", (415,), _raw(SEARCH), path="/search", content_type="text/plain"),
    HostileCase("wrong Host (DNS rebinding)", (400,), _raw(SEARCH), path="/search", host="evil.example"),
)


def send_case(base_url: str, pid: int, case: HostileCase, pipeline: str, timeout_s: float) -> dict[str, Any]:
    """Send one hostile request; its status, latency, answer size and the server's RSS meanwhile."""
    body = case.body(pipeline)
    headers = {"Content-Type": case.content_type}
    if case.host:
        headers["Host"] = case.host
    with sample_rss(pid) as rss, httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        started = time.perf_counter()
        try:
            response = client.post(case.path, content=body, headers=headers)
            status: int | str = response.status_code
            size = len(response.content)
        except httpx.TimeoutException:
            status, size = "timeout", 0
        except httpx.HTTPError as err:
            status, size = f"failed: {type(err).__name__}", 0
        seconds = time.perf_counter() - started
    growth = rss.peak_mb - rss.start_mb
    return {
        "case": case.name,
        "path": case.path,
        "body_bytes": len(body),
        "status": status,
        "expected": list(case.expected),
        "seconds": round(seconds, 3),
        "answer_bytes": size,
        **rss.as_dict(),
        "ok": status in case.expected and seconds < MAX_SECONDS and growth < MAX_GROWTH_MB,
    }


def wedged(target: Target, row: dict[str, Any], baseline_mb: float) -> str | None:
    """Why the server should be restarted after a case (None when it is fine): no answer in time, /health silent,
    or its resident memory still over the baseline by MAX_GROWTH_MB."""
    if not isinstance(row["status"], int):
        return f"no answer ({row['status']})"
    if not target.healthy(2.0):
        return "/health did not answer within 2 s"
    now_mb = rss_bytes(target.pid) / MB
    if now_mb - baseline_mb > MAX_GROWTH_MB:
        return (
            f"RSS {now_mb:.0f} MB, {now_mb - baseline_mb:.0f} MB over the {baseline_mb:.0f} MB it started the cases at"
        )
    return None


def warm_up(base_url: str, pipeline: str, requests: int = 3, timeout_s: float = 60.0) -> None:
    """A few ordinary searches, so a freshly (re)started server's first-query allocations (torch grows a cold
    teacher by ~350 MB) are not counted as a hostile request's growth."""
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        for i in range(requests):
            try:
                client.post("/search", json={"query": f"vitamin d and bone density {i}", "pipeline": pipeline})
            except httpx.HTTPError:
                return


def run_hostile(
    base_url: str, target: Target, pipeline: str, timeout_s: float = 10.0, cases: tuple[HostileCase, ...] = CASES
) -> list[dict[str, Any]]:
    """Every case in turn, on a warm server; a server a case leaves wedged is restarted and warmed up again
    (`restarted` in the row says why)."""
    warm_up(base_url, pipeline)
    baseline_mb = rss_bytes(target.pid) / MB
    rows = []
    for case in cases:
        row = send_case(base_url, target.pid, case, pipeline, timeout_s)
        why = wedged(target, row, baseline_mb)
        row["restarted"] = why
        logger.info("hostile %s: %s in %.3f s, RSS +%.0f MB%s", case.name, row["status"], row["seconds"],
                    row["rss_growth_mb"], f"; restarting the server: {why}" if why else "")  # fmt: skip
        if why:
            target.restart()
            warm_up(base_url, pipeline)
            baseline_mb = rss_bytes(target.pid) / MB
        rows.append(row)
    return rows
