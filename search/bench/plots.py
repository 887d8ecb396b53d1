"""PNG plots of `semsearch bench` rows: recall vs latency (with the Pareto frontier), nDCG vs latency, recall vs
bytes per vector. One colour per encoder, one marker per index family. matplotlib is imported lazily (Agg)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from search.selection import frontier
from semsearch_common.atomic import atomic_path
from semsearch_common.errors import MissingDependencyError

MARKERS = {"Flat": "o", "HNSW": "^", "IVF-Flat": "s", "IVF-PQ": "D", "OPQ": "P", "PQ": "X", "SQ8": "v"}
PLOTS = (
    ("recall_vs_latency.png", "total_ms_p50", "recall@10_vs_teacher", "total latency p50 (ms, encode + search)"),
    ("ndcg_vs_latency.png", "total_ms_p50", "ndcg@10", "total latency p50 (ms, encode + search)"),
    ("recall_vs_bytes.png", "bytes_per_vector", "recall@10_vs_teacher", "bytes per vector (index memory per document)"),
)


def pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependencyError("bench plots need matplotlib: `pip install matplotlib`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def index_family(factory: str) -> str:
    """Flat, HNSW, IVF-Flat, IVF-PQ, OPQ, PQ or SQ8 (a trailing ,RFlat keeps its base family's marker)."""
    if factory.startswith("OPQ"):
        return "OPQ"
    if factory.startswith("IVF"):
        return "IVF-PQ" if re.search(r",PQ\d", factory) else "IVF-Flat"
    for family in ("HNSW", "PQ", "SQ8"):
        if factory.startswith(family):
            return family
    return "Flat"


def write_plots(
    rows: Sequence[Mapping[str, Any]], out_dir: Path, reference: tuple[str, str] | None = None
) -> list[Path]:
    """Write the three plots into `out_dir` atomically; `reference` = (encoder, index) of the point to star."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    encoders = list(dict.fromkeys(row["encoder"] for row in rows))
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(encoders)}
    written = []
    for filename, x_key, y_key, x_label in PLOTS:
        fig, ax = plt.subplots(figsize=(9, 6))
        for name in encoders:
            for family, marker in MARKERS.items():
                points = [r for r in rows if r["encoder"] == name and index_family(r["index"]) == family]
                if points:
                    ax.scatter([max(r[x_key], 1e-6) for r in points], [r[y_key] for r in points],
                               color=colours[name], marker=marker, s=36, alpha=0.85)  # fmt: skip
        if y_key == "recall@10_vs_teacher" and x_key == "total_ms_p50":
            front = frontier([(r[y_key], r[x_key]) for r in rows])
            if front:
                ax.step([max(x, 1e-6) for _, x in front], [y for y, _ in front], where="post", color="black",
                        linewidth=1.2, alpha=0.7, label="Pareto frontier")  # fmt: skip
        if reference is not None:
            ref = [r for r in rows if (r["encoder"], r["index"]) == reference]
            if ref:
                label = f"{reference[0]} + {reference[1]} (reference)"
                ax.scatter([max(ref[0][x_key], 1e-6)], [ref[0][y_key]], marker="*", s=300, facecolors="none",
                           edgecolors="black", linewidths=1.5, label=label)  # fmt: skip
        handles = [
            plt.Line2D([], [], color=colours[name], marker="o", linestyle="", label=name) for name in encoders
        ] + [
            plt.Line2D([], [], color="grey", marker=marker, linestyle="", label=family)
            for family, marker in MARKERS.items()
            if any(index_family(r["index"]) == family for r in rows)
        ]
        extra, extra_labels = ax.get_legend_handles_labels()
        ax.legend(handles=handles + extra, labels=[h.get_label() for h in handles] + extra_labels, fontsize=8,
                  loc="best")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_key.replace("_", " "))
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{y_key} vs {x_label.split(' (')[0]}")
        fig.tight_layout()
        target = out_dir / filename
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        written.append(target)
    return written
