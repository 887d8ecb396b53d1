"""Two source trees' servers side by side, their measurements interleaved.

On a machine whose speed drifts (a shared VM: the same in-process query here took 6.2 ms in one run and 8.5 ms in
the next), two runs one after the other measure the drift as much as the change. `run_ab` starts both servers at once
(the idle one costs nothing) and alternates them: per pipeline and load level, `rounds` closed-loop measurements each,
A then B in even rounds and B then A in odd ones; and the one-client latency, in interleaved chunks.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from reliability_harness.latency import KeepAliveClient, measure_http
from reliability_harness.load import run_load
from reliability_harness.server import ServerProcess, ServerSpec
from semsearch_common.atomic import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)


def run_ab(
    specs: dict[str, ServerSpec],
    queries: Sequence[str],
    levels: Sequence[int],
    duration_s: float,
    warmup_s: float,
    rounds: int = 2,
    latency_queries: int = 100,
) -> dict[str, Any]:
    """Start every server of `specs` (label -> spec, two of them, serving the same pipelines on their own ports) and
    measure them interleaved; per (pipeline, label): the one-client latency and every round of every load level."""
    if len(specs) != 2:
        raise ValueError(f"an A/B run needs two servers, got {len(specs)}")
    labels = list(specs)
    pipelines = [name for name, _ in next(iter(specs.values())).pipelines]
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        servers = {label: stack.enter_context(ServerProcess(spec)) for label, spec in specs.items()}
        clients = {label: KeepAliveClient("127.0.0.1", server.spec.port) for label, server in servers.items()}
        for name in pipelines:
            latency: dict[str, list[float]] = {label: [] for label in labels}
            for round_ in range(rounds * 2):
                chunk = [queries[(round_ * latency_queries + i) % len(queries)] for i in range(latency_queries)]
                for label in labels if round_ % 2 == 0 else labels[::-1]:
                    latency[label] += measure_http(clients[label], name, chunk, 10)[0]
            for label in labels:
                rows.append({"pipeline": name, "label": label, "clients": 0, "latency_ms": latency[label]})
            for level in levels:
                for round_ in range(rounds):
                    for label in labels if round_ % 2 == 0 else labels[::-1]:
                        base_url = servers[label].spec.base_url
                        result = run_load(base_url, name, level, duration_s, queries, warmup_s=warmup_s)
                        logger.info("ab %s x%d %s: %.1f req/s", name, level, label, result.req_per_s)
                        rows.append({"pipeline": name, "label": label, **result.as_dict()})
        for client in clients.values():
            client.close()
    return {
        "labels": labels,
        "sources": {label: str(spec.src) for label, spec in specs.items()},
        "pythons": {label: spec.python for label, spec in specs.items()},
        "levels": list(levels),
        "rounds": rounds,
        "duration_s": duration_s,
        "rows": rows,
    }


def ab_table(results: dict[str, Any]) -> str:
    """Markdown: per pipeline, the one-client p50 and, per load level, req/s (median of the rounds, and each round)
    and p50/p99 (medians) of both servers."""
    labels = results["labels"]
    out = ["| pipeline | clients | " + " | ".join(f"{label} req/s (rounds) | {label} p50 / p99 ms" for label in labels)
           + " |", "|---|---|" + "---|---|" * len(labels)]  # fmt: skip
    keys = list(dict.fromkeys((r["pipeline"], r["clients"]) for r in results["rows"]))
    for pipeline, clients in keys:
        cells = []
        for label in labels:
            mine = [
                r for r in results["rows"] if (r["pipeline"], r["clients"], r["label"]) == (pipeline, clients, label)
            ]
            if clients == 0:
                ms = sorted(mine[0]["latency_ms"])
                cells += ["-", f"{statistics.median(ms):.2f} / {ms[int(0.99 * (len(ms) - 1))]:.2f}"]
                continue
            rates = [r["req_per_s"] for r in mine]
            p50 = statistics.median(r["p50_ms"] for r in mine)
            p99 = statistics.median(r["p99_ms"] for r in mine)
            cells += [
                f"{statistics.median(rates):.1f} ({', '.join(f'{x:.1f}' for x in rates)})",
                f"{p50:.1f} / {p99:.1f}",
            ]
        out.append(f"| {pipeline} | {clients or '1 (one connection, raw socket)'} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def write_ab(results: dict[str, Any], out: Path) -> str:
    """results.json and table.md under `out`; returns the table."""
    text = ab_table(results)
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "table.md", text)
    return text
