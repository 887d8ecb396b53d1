"""The outputs of `semsearch bench`: results.json/csv/md, machine.json, loss_split.json, summary.json and the
plots, each written atomically; the Markdown tables come from `semsearch_common.tables`."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.bench.ann.measure import ROW_KEYS
from search.bench.ann.selections import best_under_budget
from search.bench.ann.spec import BATCH, RECALL_K, TOP_K, BenchSpec, format_params
from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.tables import markdown_table

RESULT_HEADERS = (
    "encoder", "docs", "prec", "index", "params", "R@10 vs teacher", "R@10 vs exact", "nDCG@10", "R@100",
    "encode p50", "search p50", "total p50", "total p95", "QPS@64", "B/vec", "build s", "★",
)  # fmt: skip
LOSS_HEADERS = (
    "encoder", "prec", "fp32 counterpart", "exact R@10 vs teacher", "student vs teacher loss", "int8 vs fp32 loss",
    "int8/fp32 top-10 overlap",
)  # fmt: skip
ANN_LOSS_HEADERS = ("encoder", "index", "params", "loss", "R@10 vs teacher")


@dataclass(frozen=True)
class BenchResult:
    """What one run produced: the rows, the loss split, the skipped (encoder, index) pairs and where it ran."""

    rows: list[dict[str, Any]]
    losses: dict[str, Any]
    skipped: list[dict[str, str]]
    dataset: str
    queries: int
    machine: dict[str, Any]


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV with the `ROW_KEYS` columns, params as `name=value,...`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(ROW_KEYS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "params": format_params(row["params"])})
    return buffer.getvalue()


def make_summary(spec: BenchSpec, result: BenchResult, plots: Sequence[Path]) -> dict[str, Any]:
    """summary.json: the run's facts, the budget pick, the Pareto rows, what was skipped, the spec and machine."""
    budget = (
        best_under_budget(result.rows, spec.budget_ms, spec.budget_bytes)
        if spec.budget_ms is not None or spec.budget_bytes is not None
        else None
    )
    return {
        "dataset": result.dataset,
        "split": spec.split,
        "queries": result.queries,
        "teacher": spec.teacher,
        "configurations": len(result.rows),
        "budget": budget,
        "pareto": [
            {key: row[key] for key in ("encoder", "index", "params", "recall@10_vs_teacher", "total_ms_p50")}
            for row in result.rows
            if row["pareto"]
        ],
        "skipped": result.skipped,
        "plots": [path.name for path in plots],
        "spec": {**asdict(spec), "encoders": [asdict(e) for e in spec.encoders]},
        "machine": result.machine,
    }


def write_outputs(spec: BenchSpec, result: BenchResult, out_dir: Path) -> dict[str, Any]:
    """results.json/csv/md, machine.json, loss_split.json, summary.json and the plots; returns the summary."""
    from search.bench.plots import write_plots  # matplotlib only when writing

    teacher_label = spec.teacher_label()
    plots = write_plots(result.rows, out_dir, reference=(teacher_label, "Flat") if teacher_label else None)
    summary = make_summary(spec, result, plots)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", result.rows)
    write_text_atomic(out_dir / "results.csv", rows_csv(result.rows))
    write_json_atomic(out_dir / "machine.json", result.machine)
    write_json_atomic(out_dir / "loss_split.json", result.losses)
    write_json_atomic(out_dir / "summary.json", summary)
    write_text_atomic(out_dir / "results.md", results_markdown(summary, result.rows, result.losses))
    return summary


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def result_cells(row: Mapping[str, Any]) -> list[str]:
    """One results.md line: recalls to 3 decimals, nDCG to 4, latencies to 3 significant digits."""
    return [
        row["encoder"], row["doc_encoder"], row["precision"], row["index"], format_params(row["params"]),
        f"{row['recall@10_vs_teacher']:.3f}", f"{row['recall@10_vs_exact']:.3f}", f"{row['ndcg@10']:.4f}",
        f"{row['recall@100']:.3f}", f"{row['encode_ms_p50']:.3g}", f"{row['search_ms_p50']:.3g}",
        f"{row['total_ms_p50']:.3g}", f"{row['total_ms_p95']:.3g}", f"{row['qps_batch64']:.0f}",
        f"{row['bytes_per_vector']:.4g}", f"{row['build_s']:.2f}", "★" if row["pareto"] else "",
    ]  # fmt: skip


def loss_tables(losses: Mapping[str, Any]) -> tuple[str, str]:
    """The per-encoder loss table and the per-index ANN loss table of results.md."""
    encoder_rows, ann_rows = [], []
    for item in losses["encoders"]:
        student, int8 = item["student_vs_teacher"] or {}, item["int8_vs_fp32"] or {}
        encoder_rows.append([
            item["encoder"], item["precision"], item["fp32_counterpart"] or "-",
            f"{item['exact_recall@10_vs_teacher']:.3f}", _fmt(student.get("loss")), _fmt(int8.get("loss")),
            _fmt(int8.get("top10_overlap_with_fp32")),
        ])  # fmt: skip
        for factory, ann in item["ann_vs_exact"].items():
            ann_rows.append([item["encoder"], factory, format_params(ann["params"]), f"{ann['loss']:.3f}",
                             f"{ann['recall@10_vs_teacher']:.3f}"])  # fmt: skip
    return markdown_table(LOSS_HEADERS, encoder_rows), markdown_table(ANN_LOSS_HEADERS, ann_rows)


def results_markdown(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], losses: Mapping[str, Any]) -> str:
    """results.md: how it was measured, the budget pick, every row, where the recall goes, skips and plots."""
    machine = summary["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
    encoder_losses, ann_losses = loss_tables(losses)
    lines = [
        f"# Recall vs latency on {summary['dataset']} ({summary['split']} split, {summary['queries']} queries)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads "
        f"(FAISS {machine['faiss_omp_threads']} OpenMP threads). {versions}.",
        "",
        f"Ground truth of recall@10 vs teacher: the exact top-10 of `{summary['teacher']}`. Latency is per query "
        f"(batch 1): encode once per query, search the fastest of {summary['spec']['repeats']} repeats; total = "
        f"encode + search, p50/p95 over queries. Search asks for the top {TOP_K}; recall@100 comes from a second, "
        f"untimed top-{RECALL_K} search. QPS@64 = queries / (encode + search time in batches of {BATCH}). "
        "★ = on the Pareto frontier of recall@10 vs teacher and total p50.",
        "",
        "## Budget",
        "",
        summary["budget"]["message"] if summary["budget"] else "No budget given (--budget-ms / --budget-bytes).",
        "",
        "## Results",
        "",
        markdown_table(RESULT_HEADERS, [result_cells(row) for row in rows]).rstrip("\n"),
        "",
        "## Where the recall goes",
        "",
        *(f"- **{name}**: {text}." for name, text in losses["definitions"].items()),
        "",
        encoder_losses.rstrip("\n"),
        "",
        "ANN/PQ loss vs exact search at default parameters (1 - recall@10 vs exact):",
        "",
        ann_losses.rstrip("\n"),
    ]
    if summary["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['encoder']} + {s['index']}: {s['reason']}" for s in summary["skipped"]]
    if summary["plots"]:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in summary["plots"]]
    return "\n".join(lines) + "\n"
