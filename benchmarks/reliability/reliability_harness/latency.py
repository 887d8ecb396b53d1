"""What one query costs through HTTP against what the same pipeline costs in-process.

One client on one keep-alive connection posts `/search` (k = 10) with query after query; each answer's client time
(request written to answer read) is set against the pipeline's own `total_ms` measured in this process
(`Pipeline.search`, the same index directory, as many encoder threads as the server). The client is a blocking
socket with the request bytes built before the clock starts and the answer read by its Content-Length, so what it
measures is the server, the loopback and the kernel, not a client library. The in-process and HTTP measurements are
interleaved in rounds (in-process chunk, HTTP chunk, ...) so a machine whose speed drifts moves both alike; the
server idles while the in-process chunk runs.

The in-process figure is a hot loop: query after query with no pause. A server waits for each request, and a CPU that
idled between two of them runs the same code slower (cold caches, a halted virtual CPU woken). So each round also
times the pipeline in-process with `pause_ms` of sleep before each query, roughly the idle gap a server sees between
one client's requests; that column separates the cost of idling from the cost of HTTP.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reliability_harness.load import http_request

logger = logging.getLogger(__name__)


class KeepAliveClient:
    """HTTP/1.1 over one blocking socket (Nagle off): `request` sends prepared bytes and reads one whole answer."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.sock = self._connect()
        self._buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reconnect(self) -> None:
        """A fresh connection (the server closes one left idle past its keep-alive timeout)."""
        self.sock.close()
        self.sock = self._connect()
        self._buffer = b""

    def prepare(self, method: str, path: str, body: bytes | None = None) -> bytes:
        return http_request(self.host, self.port, method, path, body)

    def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send `raw` (from `prepare`) and return the answer's status and body (Content-Length framed)."""
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self._buffer = rest
        while len(self._buffer) < length:
            self._read()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, body

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        self.sock.close()


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(ms, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)}


def measure_http(
    client: KeepAliveClient, pipeline: str, queries: Sequence[str], k: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Client ms and the server's own `timings.total_ms` of each query (an answer other than 200 raises), on a fresh
    connection warmed by `warmup` untimed queries."""
    client.reconnect()
    client_ms: list[float] = []
    server_ms: list[float] = []
    for i, query in enumerate([*queries[:warmup], *queries]):
        raw = client.prepare("POST", "/search", json.dumps({"query": query, "k": k, "pipeline": pipeline}).encode())
        started = time.perf_counter()
        status, body = client.request(raw)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        if status != 200:
            raise RuntimeError(f"POST /search on {pipeline} answered {status}: {body[:200]!r}")
        if i >= warmup:
            client_ms.append(elapsed_ms)
            server_ms.append(json.loads(body)["timings"]["total_ms"])
    return client_ms, server_ms


def measure_health(client: KeepAliveClient, n: int) -> list[float]:
    client.reconnect()
    raw = client.prepare("GET", "/health")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        status, _ = client.request(raw)
        times.append((time.perf_counter() - started) * 1e3)
        if status != 200:
            raise RuntimeError(f"GET /health answered {status}")
    return times


def run_latency(
    host: str,
    port: int,
    pipelines: Sequence[tuple[str, Path]],
    queries: Sequence[str],
    threads: int,
    k: int = 10,
    per_round: int = 100,
    rounds: int = 3,
    warmup: int = 30,
    load_pipeline: Callable[[Path, int], Any] | None = None,
    pause_ms: float = 1.0,
) -> dict[str, Any]:
    """Per pipeline: client p50/p95/p99, the server's reported total, and the in-process total (`load_pipeline(dir,
    threads)` loads it here; default `search.pipeline.Pipeline.load`) back to back and `pause_ms` apart, with
    `overhead_ms` = client p50 - in-process p50 (back to back); and `GET /health` at the client."""
    if load_pipeline is None:
        from search.pipeline import Pipeline

        load_pipeline = lambda path, n: Pipeline.load(path, threads=n)  # noqa: E731
    client = KeepAliveClient(host, port)
    rows = []
    try:
        health = measure_health(client, warmup)
        for name, index_dir in pipelines:
            local = load_pipeline(index_dir, threads)
            for query in queries[:warmup]:
                local.search(query, k)
            measure_http(client, name, queries[:warmup], k)
            client_ms: list[float] = []
            server_ms: list[float] = []
            local_ms: list[float] = []
            paced_ms: list[float] = []
            for round_ in range(rounds):
                chunk = [queries[(round_ * per_round + i) % len(queries)] for i in range(per_round)]
                local_ms += [local.search(query, k).timings.total_ms for query in chunk]
                for query in chunk:
                    time.sleep(pause_ms / 1e3)
                    paced_ms.append(local.search(query, k).timings.total_ms)
                got_client, got_server = measure_http(client, name, chunk, k)
                client_ms += got_client
                server_ms += got_server
            del local
            row = {
                "pipeline": name,
                "requests": len(client_ms),
                "client_ms": percentiles(client_ms),
                "server_total_ms": percentiles(server_ms),
                "inprocess_total_ms": percentiles(local_ms),
                "inprocess_paced_total_ms": percentiles(paced_ms),
            }
            row["overhead_ms"] = round(row["client_ms"]["p50"] - row["inprocess_total_ms"]["p50"], 3)
            logger.info(
                "latency %s: client p50 %.3f ms, server total p50 %.3f ms, in-process total p50 %.3f ms (+%.3f ms)",
                name, row["client_ms"]["p50"], row["server_total_ms"]["p50"], row["inprocess_total_ms"]["p50"],
                row["overhead_ms"],
            )  # fmt: skip
            rows.append(row)
        health += measure_health(client, per_round * rounds)
    finally:
        client.close()
    return {
        "k": k,
        "threads": threads,
        "rounds": rounds,
        "per_round": per_round,
        "pause_ms": pause_ms,
        "health_client_ms": percentiles(health[warmup:]),
        "pipelines": rows,
    }
