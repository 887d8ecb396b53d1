"""What the rows say: the Pareto flags, the best configuration under a latency/memory budget, and where the recall
goes (encoder vs teacher, int8 vs fp32, index vs exact search). Pure functions over result rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.bench.ann.spec import EncoderEntry, doc_encoder_name, format_params
from search.selection import pareto_mask

LOSS_DEFINITIONS = {
    "student_vs_teacher": "1 - recall@10_vs_teacher of the fp32 counterpart's exact (Flat) search: what the smaller "
    "encoder loses before any quantization or index",
    "int8_vs_fp32": "recall@10_vs_teacher of the fp32 counterpart's exact search minus that of this int8 encoder's "
    "exact search (negative: int8 happened to agree more); top10_overlap_with_fp32 is the mean overlap of the two "
    "exact top-10 lists",
    "ann_vs_exact": "1 - recall@10_vs_exact of each index at its default search parameters: what the approximate "
    "index (IVF probing, HNSW, PQ/SQ codes) loses against exact search over the same vectors",
}


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """Set `pareto` on every row: on the frontier of recall@10_vs_teacher (up) vs total_ms_p50 (down)."""
    mask = pareto_mask([(row["recall@10_vs_teacher"], row["total_ms_p50"]) for row in rows])
    for row, keep in zip(rows, mask, strict=True):
        row["pareto"] = keep


def best_under_budget(
    rows: Sequence[Mapping[str, Any]], budget_ms: float | None = None, budget_bytes: float | None = None
) -> dict[str, Any]:
    """The row with the highest recall@10_vs_teacher (ties: lower total_ms_p50) whose total_ms_p50 (encoder +
    index) <= budget_ms and bytes_per_vector <= budget_bytes; `best` is None and `message` says so if none fits."""
    fits = [
        row
        for row in rows
        if (budget_ms is None or row["total_ms_p50"] <= budget_ms)
        and (budget_bytes is None or row["bytes_per_vector"] <= budget_bytes)
    ]
    limits = " and ".join(
        text
        for text, value in (
            (f"total_ms_p50 <= {budget_ms} ms", budget_ms),
            (f"bytes_per_vector <= {budget_bytes}", budget_bytes),
        )
        if value is not None
    )
    if not fits:
        message = f"no configuration fits {limits or 'the budget'}"
        if rows:
            fastest = min(rows, key=lambda r: r["total_ms_p50"])
            smallest = min(rows, key=lambda r: r["bytes_per_vector"])
            message += (
                f"; the fastest is {describe(fastest)} at {fastest['total_ms_p50']:.3g} ms, the smallest "
                f"{describe(smallest)} at {smallest['bytes_per_vector']:.4g} bytes/vector"
            )
        return {"budget_ms": budget_ms, "budget_bytes": budget_bytes, "best": None, "message": message}
    best = max(fits, key=lambda r: (r["recall@10_vs_teacher"], -r["total_ms_p50"]))
    message = (
        f"best under {limits or 'no budget'}: {describe(best)} with recall@10 vs teacher "
        f"{best['recall@10_vs_teacher']:.3f}, total p50 {best['total_ms_p50']:.3g} ms, "
        f"{best['bytes_per_vector']:.4g} bytes/vector"
    )
    return {"budget_ms": budget_ms, "budget_bytes": budget_bytes, "best": dict(best), "message": message}


def describe(row: Mapping[str, Any]) -> str:
    """`encoder + index (params)`, naming one configuration in messages."""
    params = f" ({format_params(row['params'])})" if row["params"] else ""
    return f"{row['encoder']} + {row['index']}{params}"


def loss_split(
    rows: Sequence[Mapping[str, Any]],
    entries: Sequence[EncoderEntry],
    exact_vs_teacher: Mapping[str, float],
    int8_overlap: Mapping[str, float | None],
    counterparts: Mapping[str, str | None],
    precisions: Mapping[str, str],
) -> dict[str, Any]:
    """Where the recall goes, per encoder: encoder vs teacher, int8 vs fp32, and each index vs exact search."""
    split = []
    for entry in entries:
        fp32 = counterparts[entry.label]
        own = exact_vs_teacher[entry.label]
        item: dict[str, Any] = {
            "encoder": entry.label,
            "doc_encoder": doc_encoder_name(entry, entries),
            "precision": precisions[entry.label],
            "fp32_counterpart": fp32,
            "exact_recall@10_vs_teacher": own,
            "student_vs_teacher": None,
            "int8_vs_fp32": None,
            "ann_vs_exact": {},
        }
        if fp32 is not None:
            base = exact_vs_teacher[fp32]
            item["student_vs_teacher"] = {"encoder": fp32, "recall@10_vs_teacher": base, "loss": 1.0 - base}
            if fp32 != entry.label:
                item["int8_vs_fp32"] = {
                    "fp32": fp32,
                    "loss": base - own,
                    "top10_overlap_with_fp32": int8_overlap.get(entry.label),
                }
        for row in rows:
            if row["encoder"] == entry.label and row["default_params"]:
                item["ann_vs_exact"][row["index"]] = {
                    "params": row["params"],
                    "recall@10_vs_exact": row["recall@10_vs_exact"],
                    "loss": 1.0 - row["recall@10_vs_exact"],
                    "recall@10_vs_teacher": row["recall@10_vs_teacher"],
                }
        split.append(item)
    return {"definitions": LOSS_DEFINITIONS, "encoders": split}
