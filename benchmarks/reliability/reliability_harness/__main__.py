"""`PYTHONPATH=benchmarks/reliability python -m reliability_harness run|compare`: start `semsearch serve` from a
source tree and drive it (one-client latency against in-process, load, hostile requests, evaluation storm,
schemathesis), or compare two runs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from reliability_harness.ab import run_ab, write_ab
from reliability_harness.hostile import run_hostile
from reliability_harness.latency import run_latency
from reliability_harness.load import run_load
from reliability_harness.report import compare_tables, write_report
from reliability_harness.rss import sample_rss
from reliability_harness.schema import run_schemathesis
from reliability_harness.server import ServerProcess, ServerSpec, parse_pipelines
from reliability_harness.storm import run_storm
from search.data.beir import load_beir
from semsearch_common.machine import machine_info
from semsearch_common.threads import available_cores

logger = logging.getLogger(__name__)
PHASES = ("latency", "load", "hostile", "storm", "schema")


def train_queries(dataset_dir: Path) -> list[str]:
    """Query texts of the dataset's train split (never test); every query when it has no train qrels."""
    dataset = load_beir(dataset_dir)
    if "train" in dataset.qrels:
        return dataset.split_queries("train")[1]
    return list(dataset.queries.values())


def machine(src: Path) -> dict[str, Any]:
    """CPU, cores and hardware threads, the cores this process may use, and the load average before the run."""
    return {
        **machine_info(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "source": str(src),
    }


def ensure_up(server: ServerProcess, why: str) -> None:
    """Restart the server when /health does not answer (a phase left it wedged)."""
    if not server.healthy(5.0):
        logger.info("the server does not answer /health after %s: restarting it", why)
        server.restart()


def run(args: argparse.Namespace) -> dict[str, Any]:
    queries = train_queries(Path(args.dataset))
    pipelines = parse_pipelines(args.pipeline)
    spec = ServerSpec(
        src=Path(args.src).resolve(),
        pipelines=pipelines,
        port=args.port,
        python=args.python,
        extra_args=tuple(args.server_arg),
        log_path=Path(args.server_log or Path(tempfile.gettempdir()) / f"semsearch-reliability-{args.label}.log"),
    )
    results: dict[str, Any] = {
        "label": args.label,
        "source": str(spec.src),
        "machine": machine(spec.src),
        "server_command": spec.command()[3:],
        "server_log": str(spec.log_path),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "levels": args.levels,
        "queries": len(queries),
        "load": [],
    }
    with ServerProcess(spec) as server:
        results["server_rss_mb_idle"] = round(psutil.Process(server.pid).memory_info().rss / 2**20, 1)
        base_url = spec.base_url
        if "latency" in args.phases:
            chosen = [
                (name, path) for name, path in pipelines if not args.latency_pipeline or name in args.latency_pipeline
            ]
            results["latency"] = run_latency(
                "127.0.0.1", args.port, chosen, queries, threads=available_cores(),
                rounds=args.latency_rounds, per_round=args.latency_per_round,
            )  # fmt: skip
        if "load" in args.phases:
            for name, _ in pipelines:
                for clients in args.levels:
                    ensure_up(server, "the previous load level")
                    with sample_rss(server.pid) as rss:
                        level = run_load(base_url, name, clients, args.duration, queries, warmup_s=args.warmup)
                    row = {
                        **level.as_dict(),
                        **rss.as_dict(),
                        "server_threads": psutil.Process(server.pid).num_threads(),
                    }
                    logger.info("load %s x%d: %.1f req/s, p50 %.1f ms, p99 %.1f ms, errors %d, RSS %s/%s/%s MB",
                                name, clients, row["req_per_s"], row["p50_ms"], row["p99_ms"], row["errors"],
                                row["rss_start_mb"], row["rss_peak_mb"], row["rss_end_mb"])  # fmt: skip
                    results["load"].append(row)
        if "hostile" in args.phases:
            ensure_up(server, "the load")
            results["hostile"] = run_hostile(base_url, server, args.hostile_pipeline, timeout_s=args.case_timeout)
        if "storm" in args.phases:
            ensure_up(server, "the hostile requests")
            results["storm"] = run_storm(base_url, timeout_s=args.storm_timeout)
            logger.info("storm: /health p99 %s ms, max %s ms", results["storm"]["health_p99_ms"],
                        results["storm"]["health_max_ms"])  # fmt: skip
            if "timeout" in results["storm"]["metrics_statuses"]:
                logger.info("GET /evaluation timed out: restarting the server (it may still be evaluating)")
                server.restart()
        if "schema" in args.phases and args.schemathesis_examples > 0:
            ensure_up(server, "the evaluation storm")
            results["schemathesis"] = run_schemathesis(
                base_url, args.schemathesis_examples, args.schemathesis_timeout, out=Path(args.out)
            )
            logger.info("schemathesis: %s %s", results["schemathesis"]["status"], results["schemathesis"]["summary"])
        results["server_starts"] = server.starts
    return results


def run_ab_command(args: argparse.Namespace) -> int:
    """`ab`: both servers started, measured interleaved, stopped; the table printed and written under --out."""
    try:
        pipelines = parse_pipelines(args.pipeline)
        specs = {}
        for i, (side, python) in enumerate(((args.a, args.python_a), (args.b, args.python_b))):
            label, sep, src = side.partition("=")
            if not sep or not label or not Path(src, "search").is_dir():
                raise ValueError(f"--a/--b take LABEL=SRC with SRC a semsearch source tree, got {side!r}")
            log = Path(tempfile.gettempdir()) / f"semsearch-ab-{label}.log"
            specs[label] = ServerSpec(Path(src).resolve(), pipelines, args.port + i, python=python, log_path=log)
        results = run_ab(specs, train_queries(Path(args.dataset)), args.levels, args.duration, args.warmup, args.rounds)
    except (ValueError, RuntimeError) as err:
        logger.error("error: %s", err)
        return 2
    results["machine"] = machine(Path(".").resolve())
    sys.stdout.write(write_ab(results, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reliability_harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="start a server from --src; load, hostile requests, evaluation storm, schema")
    one.add_argument("--src", default=".", help="source tree the server runs from (first on its PYTHONPATH)")
    one.add_argument("--python", default=sys.executable, help="interpreter for the server (its venv)")
    one.add_argument("--pipeline", action="append", required=True, help="NAME=DIR, repeatable (served and loaded)")
    one.add_argument("--port", type=int, default=8799)
    one.add_argument("--server-arg", action="append", default=[], help="extra `semsearch serve` argument, repeatable")
    one.add_argument("--dataset", required=True, help="BEIR folder whose train queries are sent")
    one.add_argument("--out", type=Path, required=True, help="results.json, table.md, schemathesis.txt go here")
    one.add_argument("--server-log", help="the server's output (default: semsearch-reliability-LABEL.log in /tmp)")
    one.add_argument("--label", default="after")
    one.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    one.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 128], help="concurrent clients")
    one.add_argument("--duration", type=float, default=10.0, help="seconds measured per load level")
    one.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each level")
    one.add_argument(
        "--latency-pipeline",
        action="append",
        default=[],
        help="pipeline the latency phase measures (repeatable; default: every one)",
    )
    one.add_argument("--latency-rounds", type=int, default=3, help="in-process and HTTP chunks, interleaved")
    one.add_argument("--latency-per-round", type=int, default=100, help="queries per chunk")
    one.add_argument("--hostile-pipeline", default="teacher")
    one.add_argument("--case-timeout", type=float, default=10.0, help="client timeout of one hostile request")
    one.add_argument("--storm-timeout", type=float, default=90.0, help="bound on the evaluation storm")
    one.add_argument("--schemathesis-examples", type=int, default=60, help="cases per operation; 0 skips it")
    one.add_argument("--schemathesis-timeout", type=float, default=240.0)
    ab = commands.add_parser("ab", help="two source trees' servers at once, their load levels interleaved")
    for side in ("a", "b"):
        ab.add_argument(f"--{side}", required=True, metavar="LABEL=SRC", help=f"server {side.upper()}: a label and "
                        "the source tree it runs from")  # fmt: skip
        ab.add_argument(f"--python-{side}", default=sys.executable, help=f"interpreter of server {side.upper()}")
    ab.add_argument("--pipeline", action="append", required=True, help="NAME=DIR, repeatable (both serve them)")
    ab.add_argument("--port", type=int, default=8799, help="server A's port; B's is the next one")
    ab.add_argument("--dataset", required=True, help="BEIR folder whose train queries are sent")
    ab.add_argument("--out", type=Path, required=True, help="results.json and table.md go here")
    ab.add_argument("--levels", type=int, nargs="+", default=[1, 32, 128], help="concurrent clients")
    ab.add_argument("--duration", type=float, default=8.0, help="seconds measured per level and round")
    ab.add_argument("--warmup", type=float, default=1.5)
    ab.add_argument("--rounds", type=int, default=2, help="measurements of each server per level, alternating")
    both = commands.add_parser("compare", help="two runs' results side by side")
    both.add_argument("before", type=Path, help="results folder of the first run (its results.json)")
    both.add_argument("after", type=Path)
    both.add_argument("--out", type=Path, help="also write the comparison here (Markdown)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "compare":
        runs = [json.loads((folder / "results.json").read_text()) for folder in (args.before, args.after)]
        text = compare_tables(*runs)
        if args.out is not None:
            args.out.write_text(text)
        sys.stdout.write(text)
        return 0
    if args.command == "ab":
        return run_ab_command(args)
    started = time.perf_counter()
    try:
        results = run(args)
    except (ValueError, RuntimeError) as err:  # a bad argument, or a server that would not start: one line
        logger.error("error: %s", err)
        return 2
    results["harness_seconds"] = round(time.perf_counter() - started, 1)
    sys.stdout.write(write_report(results, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
