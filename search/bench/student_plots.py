"""frontier.png of `semsearch bench-students`: recall@10 vs teacher against query encode p50 (log scale), one colour
per student family, one marker per precision, the Pareto frontier ringed and connected, the teacher and the naive
int8 MiniLM labelled, every point named. matplotlib is imported lazily (Agg), through `search.bench.plots`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from search.bench.plots import pyplot
from search.selection import frontier
from semsearch_common.atomic import atomic_path

PRECISION_MARKERS = {"fp32": "o", "int8": "s", "fp16": "^"}
OTHER_MARKER = "D"
X_KEY, Y_KEY = "encode_ms_p50", "recall@10_vs_teacher"


def write_frontier_plot(
    rows: Sequence[Mapping[str, Any]], target: Path, teacher: str = "teacher", naive: str | None = "minilm-int8",
    budget_ms: float | None = None,
) -> Path:  # fmt: skip
    """Write the plot to `target` atomically; rows need name, family, precision, encode_ms_p50, recall@10_vs_teacher.
    `budget_ms` draws the latency budget as a vertical line; the `naive` row's recall as a horizontal one."""
    plt = pyplot()
    families = list(dict.fromkeys(row["family"] for row in rows))
    colours = {family: plt.get_cmap("tab10")(i % 10) for i, family in enumerate(families)}
    fig, ax = plt.subplots(figsize=(9, 6))
    for row in rows:
        x, y = max(row[X_KEY], 1e-6), row[Y_KEY]
        ax.scatter([x], [y], color=colours[row["family"]], s=48, alpha=0.9,
                   marker=PRECISION_MARKERS.get(row["precision"], OTHER_MARKER))  # fmt: skip
        reference = row["name"] in (teacher, naive)
        ax.annotate(f"{row['name']} (reference)" if reference else row["name"], (x, y), textcoords="offset points",
                    xytext=(6, 4), fontsize=8, fontweight="bold" if reference else "normal")  # fmt: skip
    points = [(row[Y_KEY], row[X_KEY]) for row in rows]
    front = frontier(points)
    if front:
        ax.step([max(x, 1e-6) for _, x in front], [y for y, _ in front], where="post", color="black", linewidth=1.0,
                alpha=0.6, label="Pareto frontier")  # fmt: skip
        ax.scatter([max(x, 1e-6) for _, x in front], [y for y, _ in front], s=220, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto-optimal")  # fmt: skip
    floor = [row[Y_KEY] for row in rows if row["name"] == naive]
    if floor:
        ax.axhline(floor[0], color="grey", linestyle="--", linewidth=1, label="naive int8 MiniLM (rows must beat)")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="grey", linestyle=":", linewidth=1, label=f"budget {budget_ms:.3g} ms")
    handles = [plt.Line2D([], [], color=colours[f], marker="o", linestyle="", label=f) for f in families]
    handles += [
        plt.Line2D([], [], color="grey", marker=PRECISION_MARKERS.get(p, OTHER_MARKER), linestyle="", label=p)
        for p in dict.fromkeys(row["precision"] for row in rows)
    ]
    extra, extra_labels = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, labels=[h.get_label() for h in handles] + extra_labels, fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.05)  # room for the point names at the edges
    ax.set_xlabel("query encode p50 (ms, one query at a time)")
    ax.set_ylabel("recall@10 vs teacher")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("students: recall@10 vs teacher against query encode latency")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target
