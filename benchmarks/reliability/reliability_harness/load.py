"""Closed-loop load: `clients` concurrent clients, each posting `/search` again as soon as it has its answer."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """One load level: answers per second, latency percentiles of every answer, and what went wrong."""

    pipeline: str
    clients: int
    seconds: float
    requests: int
    ok: int
    errors: int  # any answer other than 200, and transport failures
    busy: int  # 503s (counted among errors too)
    req_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    pipeline: str, clients: int, seconds: float, latencies_s: Sequence[float], statuses: Sequence[int]
) -> LoadResult:
    """`LoadResult` from per-request latencies (seconds) and statuses (0 for a transport failure)."""
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    p50, p95, p99, top = (float(np.percentile(ms, q)) for q in (50, 95, 99, 100)) if ms.size else (0.0,) * 4
    ok = sum(1 for status in statuses if status == 200)
    return LoadResult(
        pipeline=pipeline,
        clients=clients,
        seconds=seconds,
        requests=len(statuses),
        ok=ok,
        errors=len(statuses) - ok,
        busy=sum(1 for status in statuses if status == 503),
        req_per_s=ok / seconds if seconds > 0 else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=top,
    )


def http_request(host: str, port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    """One HTTP/1.1 request as bytes: the right `Host`, and a JSON body with its length when given."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole HTTP/1.1 answer (Content-Length or chunked); its status and whether the server keeps the
    connection open."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, keep_alive = 0, False, True
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep_alive = value != "close"
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while (await reader.readline()) not in (b"\r\n", b""):  # trailers
            pass
    else:
        await reader.readexactly(length)
    return status, keep_alive


async def _run_level(
    base_url: str, pipeline: str, clients: int, seconds: float, queries: Sequence[str], k: int, timeout_s: float
) -> LoadResult:
    """Each client holds one keep-alive connection and speaks HTTP/1.1 over asyncio streams: a client this light
    leaves the 2 shared cores to the server (an httpx client at 128 connections took a large share of them). A
    connection the server closes or breaks is counted (status 0 when broken) and opened again."""
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    latencies: list[float] = []
    statuses: list[int] = []
    counter = itertools.count()
    end = time.perf_counter() + seconds

    async def one_client() -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.perf_counter() < end:
            body = json.dumps({"query": queries[next(counter) % len(queries)], "k": k, "pipeline": pipeline})
            started = time.perf_counter()
            keep_alive = False
            try:
                if connection is None:
                    connection = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                reader, writer = connection
                writer.write(http_request(host, port, "POST", "/search", body.encode()))
                await writer.drain()
                status, keep_alive = await asyncio.wait_for(read_response(reader), timeout_s)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                status = 0
            latencies.append(time.perf_counter() - started)
            statuses.append(status)
            if not keep_alive and connection is not None:
                connection[1].close()
                connection = None
            if status == 0:
                await asyncio.sleep(0.05)  # a broken or refused connection: do not spin
        if connection is not None:
            connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return summarize(pipeline, clients, time.perf_counter() - started, latencies, statuses)


def run_load(
    base_url: str,
    pipeline: str,
    clients: int,
    seconds: float,
    queries: Sequence[str],
    k: int = 10,
    warmup_s: float = 1.0,
    timeout_s: float = 60.0,
) -> LoadResult:
    """Warm up for `warmup_s` with the same clients, then measure for `seconds`."""
    if not queries:
        raise ValueError("no queries to send")
    if warmup_s > 0:
        asyncio.run(_run_level(base_url, pipeline, clients, warmup_s, queries, k, timeout_s))
    return asyncio.run(_run_level(base_url, pipeline, clients, seconds, queries, k, timeout_s))
