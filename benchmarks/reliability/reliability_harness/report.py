"""results.json and table.md of one harness run, and the before/after comparison (Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.tables import markdown_table

LOAD_HEADERS = [
    "pipeline", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "requests", "errors", "503s",
    "RSS start/peak/end MB",
]  # fmt: skip
LATENCY_HEADERS = [
    "pipeline", "client p50 ms", "client p95 ms", "server total p50 ms", "in-process total p50 ms",
    "client p50 - in-process p50 ms", "in-process, paced, total p50 ms", "queries",
]  # fmt: skip
HOSTILE_HEADERS = [
    "case", "body bytes", "status", "expected", "seconds", "answer bytes", "RSS growth MB", "ok", "server restarted",
]  # fmt: skip


def _mb(r: dict[str, Any]) -> str:
    return f"{r['rss_start_mb']:.0f}/{r['rss_peak_mb']:.0f}/{r['rss_end_mb']:.0f}"


def load_row(r: dict[str, Any]) -> list[Any]:
    latency = [f"{r[key]:.1f}" for key in ("req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms")]
    return [r["pipeline"], r["clients"], *latency, r["requests"], r["errors"], r["busy"], _mb(r)]


def latency_row(r: dict[str, Any]) -> list[Any]:
    return [r["pipeline"], f"{r['client_ms']['p50']:.3f}", f"{r['client_ms']['p95']:.3f}",
            f"{r['server_total_ms']['p50']:.3f}", f"{r['inprocess_total_ms']['p50']:.3f}", f"{r['overhead_ms']:+.3f}",
            f"{r['inprocess_paced_total_ms']['p50']:.3f}" if "inprocess_paced_total_ms" in r else "-",
            r["requests"]]  # fmt: skip


def latency_lines(latency: dict[str, Any]) -> list[str]:
    return [
        f"One client, one keep-alive connection, POST /search k = {latency['k']}; in-process: `Pipeline.search` on "
        f"{latency['threads']} encoder threads, interleaved with the HTTP queries ({latency['rounds']} rounds of "
        f"{latency['per_round']}), back to back and (paced) {latency.get('pause_ms', '?')} ms apart. GET /health at "
        f"the client: p50 {latency['health_client_ms']['p50']:.3f} ms.\n",
        markdown_table(LATENCY_HEADERS, [latency_row(r) for r in latency["pipelines"]]),
    ]


def hostile_row(h: dict[str, Any]) -> list[Any]:
    expected = "/".join(map(str, h["expected"]))
    return [h["case"], h["body_bytes"], h["status"], expected, f"{h['seconds']:.3f}", h["answer_bytes"],
            f"{h['rss_growth_mb']:.1f}", "yes" if h["ok"] else "NO", h.get("restarted") or "-"]  # fmt: skip


def storm_line(storm: dict[str, Any]) -> str:
    return (
        f"{storm['metrics_calls']} concurrent evaluation reads: statuses {storm['metrics_statuses']}; last read "
        f"{storm.get('metrics_final_status', '?')} after {storm.get('evaluation_seconds', '?')} s; /health polled "
        f"{storm['health_polls']} times (statuses "
        f"{storm['health_statuses']}): p50 {storm['health_p50_ms']} ms, p99 {storm['health_p99_ms']} ms, max "
        f"{storm['health_max_ms']} ms: {'ok' if storm['ok'] else 'NOT ok'} (bound: every poll 200 under 100 ms)"
    )


def schema_line(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return "schemathesis: not run"
    line = f"schemathesis (all checks): {schema['status']}"
    if schema.get("failures") is not None:
        line += f", {schema['failures']} failures, {schema.get('errors') or 0} errors"
    if schema.get("summary"):
        line += " - " + "; ".join(schema["summary"])
    return line


def machine_line(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    return (
        f"machine: {m.get('cpu', '?')}, {m.get('physical_cores', '?')} cores / {m.get('cores', '?')} hardware "
        f"threads ({m.get('usable_cores', '?')} usable), {m.get('memory_gib', '?')} GiB; load average at start "
        f"{tuple(m.get('load_average', ()))}"
    )


def verdict(results: dict[str, Any]) -> list[str]:
    """One line per phase's bound (load errors, hostile refusals, the storm, schemathesis), and whether this run
    kept it."""
    lines = []
    if results.get("load"):
        errors = sum(r["errors"] for r in results["load"])
        growth = max(r["rss_end_mb"] for r in results["load"]) - min(r["rss_start_mb"] for r in results["load"])
        lines.append(f"- load: {errors} errors in {sum(r['requests'] for r in results['load'])} requests; RSS moved "
                     f"{growth:.0f} MB from the first level's start to the highest level end")  # fmt: skip
    if results.get("hostile"):
        refused = sum(1 for h in results["hostile"] if h["ok"])
        lines.append(f"- hostile: {refused}/{len(results['hostile'])} refused correctly in < 1 s with < 200 MB growth")
    if results.get("storm"):
        lines.append(f"- evaluation storm: {'ok' if results['storm']['ok'] else 'NOT ok'}")
    if results.get("schemathesis"):
        lines.append(f"- schemathesis: {results['schemathesis']['status']}")
    return lines


def tables(results: dict[str, Any]) -> str:
    """The run as Markdown: what it ran, load levels, hostile cases, the evaluation storm, schemathesis."""
    head = (
        f"## {results['label']}\n\nsource: `{results.get('source', '?')}`; {machine_line(results)}; "
        f"{results['duration_s']} s per level after {results.get('warmup_s', '?')} s of warm-up; server started "
        f"{results.get('server_starts', '?')} time(s); harness {results.get('harness_seconds', '?')} s\n"
    )
    parts = [head, *verdict(results), ""]
    if results.get("latency"):
        parts += ["### Latency: HTTP against in-process\n", *latency_lines(results["latency"])]
    if results.get("load"):
        parts += [
            "### Load (POST /search, closed loop)\n",
            markdown_table(LOAD_HEADERS, [load_row(r) for r in results["load"]]),
        ]
    if results.get("hostile"):
        parts += [
            "### Hostile requests\n",
            markdown_table(HOSTILE_HEADERS, [hostile_row(h) for h in results["hostile"]]),
        ]
    if results.get("storm"):
        parts += ["### evaluation storm\n", storm_line(results["storm"]), ""]
    parts += ["### Schema\n", schema_line(results.get("schemathesis")), ""]
    return "\n".join(parts)


def write_report(results: dict[str, Any], out: Path) -> str:
    """Write results.json and table.md under `out`; return the table."""
    text = tables(results)
    write_json_atomic(Path(out) / "results.json", results)
    write_text_atomic(Path(out) / "table.md", text)
    return text


def _cell(row: dict[str, Any], key: str) -> Any:
    return row.get(key, "-") if row else "-"


def _numbers(row: dict[str, Any]) -> tuple[str, str]:
    """A hostile row's seconds (ms resolution) and RSS growth (0.1 MB), or dashes."""
    if not row:
        return "-", "-"
    return f"{row['seconds']:.3f}", f"{row['rss_growth_mb']:.1f}"


def compare_tables(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Load levels, hostile cases, storms and schemathesis of two runs side by side (`-` where one lacks a row)."""
    b, a = before["label"], after["label"]
    keys = list(dict.fromkeys([(r["pipeline"], r["clients"]) for r in before.get("load", []) + after.get("load", [])]))
    old_load = {(r["pipeline"], r["clients"]): r for r in before.get("load", [])}
    new_load = {(r["pipeline"], r["clients"]): r for r in after.get("load", [])}
    load_rows = []
    for key in keys:
        old, new = old_load.get(key, {}), new_load.get(key, {})
        cells = [(_cell(old, name), _cell(new, name)) for name in ("req_per_s", "p50_ms", "p99_ms", "errors")]
        rss = (_mb(old) if old else "-", _mb(new) if new else "-")
        load_rows.append([*key, *(cell for pair in cells for cell in pair), *rss])
    load_headers = ["pipeline", "clients"] + [
        f"{label} {what}" for what in ("req/s", "p50 ms", "p99 ms", "errors", "RSS MB") for label in (b, a)
    ]
    cases = list(dict.fromkeys([h["case"] for h in before.get("hostile", []) + after.get("hostile", [])]))
    old_cases = {h["case"]: h for h in before.get("hostile", [])}
    new_cases = {h["case"]: h for h in after.get("hostile", [])}
    hostile_rows = []
    for case in cases:
        old, new = old_cases.get(case, {}), new_cases.get(case, {})
        hostile_rows.append([case] + [cell for run in (old, new) for cell in (_cell(run, "status"), *_numbers(run))])
    hostile_headers = ["case"] + [f"{label} {what}" for label in (b, a) for what in ("status", "s", "RSS growth MB")]
    lines = [f"## {b} vs {a}\n"]
    latency_rows = []
    for run in (before, after):
        for r in run.get("latency", {}).get("pipelines", []):
            latency_rows.append([run["label"], *latency_row(r)])
    if latency_rows:
        lines += [
            "### Latency: one client, HTTP against in-process\n",
            markdown_table(["run", *LATENCY_HEADERS], latency_rows),
        ]
    lines += ["### Load\n", markdown_table(load_headers, load_rows, digits=1)]
    lines += ["### Hostile requests\n", markdown_table(hostile_headers, hostile_rows, digits=3)]
    lines += ["### evaluation storm\n"]
    lines += [f"- {run['label']}: {storm_line(run['storm'])}" for run in (before, after) if run.get("storm")]
    lines += ["", "### Schema\n"]
    lines += [f"- {run['label']}: {schema_line(run.get('schemathesis'))}" for run in (before, after)]
    return "\n".join(lines) + "\n"
