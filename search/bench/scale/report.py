"""The scale run's outputs: scale.json, scale.csv, scale.md, the two log-scale plots, and one CLI line per row."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semsearch_common.atomic import atomic_path, write_json_atomic, write_text_atomic
from semsearch_common.errors import MissingDependencyError
from semsearch_common.tables import markdown_table

FILES = ("scale.json", "scale.csv", "scale.md", "scale_latency.png", "scale_recall.png")
CSV_COLUMNS = ("n", "index", "factory", "search_params", "build_s", "train_s", "add_s", "recall@10", "latency_ms_p50",
               "latency_ms_p95", "latency_ms_mean", "qps_batch64", "bytes_per_vector", "index_bytes", "peak_rss_mb",
               "peak_rss_added_mb")  # fmt: skip
SAME_SOURCE_CAVEAT = 0.9  # same-source share of the exact top-k from which a size gets the clumping caveat


def row_summary(row: Mapping[str, Any], k: int = 10) -> str:
    """One line per measured (index, N) for the CLI."""
    return (
        f"p50 {row['latency_ms_p50']:.3f} ms, recall@{k} {row[f'recall@{k}']:.4f}, "
        f"{row['bytes_per_vector']:.1f} B/vec, build {row['build_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB"
    )


def write_outputs(result: dict[str, Any], out_dir: Path) -> None:
    """scale.json, scale.csv, scale.md and the two plots, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    k = result["spec"]["k"]
    write_json_atomic(out_dir / "scale.json", result)
    buffer = io.StringIO()
    columns = [c.replace("@10", f"@{k}") for c in CSV_COLUMNS]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({**row, "search_params": ";".join(f"{a}={b:g}" for a, b in row["search_params"].items())})
    write_text_atomic(out_dir / "scale.csv", buffer.getvalue())
    write_text_atomic(out_dir / "scale.md", scale_markdown(result))
    if result["rows"]:
        plot_scale(result, out_dir)


def _f3(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


ROW_HEADERS = ("N", "index", "factory", "search params", "latency p50 ms", "p95 ms", "recall@{k}", "qps batch 64",
               "bytes/vector",
               "build s", "train s", "peak RSS MB", "RSS added MB")  # fmt: skip
STATS_HEADERS = ("N", "vectors per source", "mean cos to own source (corpus)", "(queries)",
                 "mean cos to nearest source (corpus)", "(queries)", "same-source share of exact top-{k}",
                 "mean exact top-1 score", "mean exact top-{k}th score")  # fmt: skip
PROFILE_HEADERS = ("N", "real top-1", "synthetic top-1", "real top-{k}th", "synthetic top-{k}th")


def _headers(headers: tuple[str, ...], k: int) -> list[str]:
    return [header.format(k=k) for header in headers]


def _row_cells(row: Mapping[str, Any], k: int) -> list[str]:
    params = ", ".join(f"{a}={b:g}" for a, b in row["search_params"].items()) or "-"
    return [
        f"{row['n']:,}",
        row["index"],
        row["factory"],
        params,
        f"{row['latency_ms_p50']:.3f}",
        f"{row['latency_ms_p95']:.3f}",
        f"{row[f'recall@{k}']:.4f}",
        f"{row['qps_batch64']:.0f}" if "qps_batch64" in row else "n/a",
        f"{row['bytes_per_vector']:.1f}",
        f"{row['build_s']:.1f}",
        f"{row['train_s']:.1f}",
        f"{row['peak_rss_mb']:.0f}",
        _mb(row["peak_rss_added_mb"]),
    ]


def _stats_cells(n: str, stats: Mapping[str, float]) -> list[str]:
    return [
        f"{int(n):,}",
        f"{stats['copies_per_source']:.1f}",
        f"{stats['mean_cosine_to_source_corpus']:.3f}",
        f"{stats['mean_cosine_to_source_queries']:.3f}",
        _f3(stats.get("mean_cosine_to_nearest_source_corpus")),
        _f3(stats.get("mean_cosine_to_nearest_source_queries")),
        f"{stats['same_source_fraction_of_exact_top_k']:.3f}",
        f"{stats['mean_exact_top1_score']:.3f}",
        f"{stats['mean_exact_topk_last_score']:.3f}",
    ]


def _profile_cells(m: str, row: Mapping[str, float | None]) -> list[str]:
    return [f"{int(m):,}", _f3(row["real_top1"]), _f3(row["synthetic_top1"]), _f3(row["real_topk_last"]),
            _f3(row["synthetic_topk_last"])]  # fmt: skip


def rows_table(result: Mapping[str, Any]) -> str:
    """One line per measured (N, index), then one per skipped pair."""
    k = result["spec"]["k"]
    rows = [_row_cells(row, k) for row in result["rows"]]
    rows += [[f"{skip['n']:,}", skip["index"], skip["factory"], "skipped", *[""] * 9] for skip in result["skipped"]]
    return markdown_table(_headers(ROW_HEADERS, k), rows)


SERVED_HEADERS = ("N", "factory", "search params", "recall@{k}", "warm p50 ms", "warm p95 ms", "cold p50 ms",
                  "cold p95 ms", "cold p50 ms, prefetch", "resident B/vector", "of which anonymous",
                  "mapped index files", "vector file on disk B/vector", "vector file resident MB",
                  "doc store on disk B/vector", "load s")  # fmt: skip


def served_table(result: Mapping[str, Any]) -> str:
    """Rows measured as served from an index directory (`--index-dirs`), one per (N, index)."""
    k = result["spec"]["k"]
    rows = []
    for row in result["rows"]:
        served = row.get("served")
        if not served:
            continue
        n = served["n"]
        params = ", ".join(f"{a}={b:g}" for a, b in served["search_params"].items()) or "-"
        rows.append([
            f"{n:,}", row["factory"], params, f"{served[f'recall@{k}']:.4f}", f"{served['warm_ms_p50']:.3f}",
            f"{served['warm_ms_p95']:.3f}", _f3(served["cold_ms_p50"]), _f3(served["cold_ms_p95"]),
            _f3(served.get("cold_prefetch_ms_p50")),
            f"{served['resident_bytes_per_vector']:.1f}", f"{served['anon_growth_bytes'] / n:.1f}",
            f"{sum(served['mapped_by_file'].values()) / n:.1f}",
            f"{served['on_disk_bytes'].get('vectors.npy', 0) / n:.0f}",
            f"{served['vector_file_resident_bytes'] / 2**20:.1f}", f"{served['doc_store_bytes'] / n:.0f}",
            f"{served['load_s']:.2f}",
        ])  # fmt: skip
    return markdown_table(_headers(SERVED_HEADERS, k), rows) if rows else ""


def vectors_table(vectors: Mapping[str, Any], k: int) -> str:
    """Per N: how the synthetic vectors relate to their sources and how clumped the exact top-k is."""
    rows = [_stats_cells(n, stats) for n, stats in vectors["per_size"].items()]
    return markdown_table(_headers(STATS_HEADERS, k), rows)


def profile_table(vectors: Mapping[str, Any], k: int) -> str:
    """Real vs synthetic neighbour-score profile at the same N."""
    rows = [_profile_cells(m, row) for m, row in vectors["profile_vs_n"].items()]
    return markdown_table(_headers(PROFILE_HEADERS, k), rows)


def scale_markdown(result: dict[str, Any]) -> str:
    """scale.md: the measured rows, how the vectors were made, and the real vs synthetic profile."""
    spec, vectors, machine = result["spec"], result["vectors"], result["machine"]
    k = spec["k"]
    generator = vectors.get("generator", "noise")
    source_word = (
        "the one it is a noisy copy of" if generator == "noise" else "its dominant source i_1 (the largest weight)"
    )
    lines = [
        f"# Index scale curve: {vectors['dim']}-d vectors grown from {vectors['source_count']} real embeddings",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine.get('memory_gib')} GiB; "
        f"**{machine['threads']} thread(s)** ({machine.get('thread_control', '')}); faiss {machine.get('faiss')}, "
        f"numpy {machine.get('numpy')}, Python {machine['python']}.",
    ]
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    lines += [
        "",
        f"Latency is one query at a time (batch 1), p50/p95 over {spec['latency_queries']} queries, best of "
        f"{spec['repeats']} repeats; qps batch 64 is every query searched in batches of 64 with the run's threads "
        f"(fastest of {spec['repeats']} passes). Recall@{k} is against exact inner-product top-{k} over "
        f"{spec['queries']} queries. "
        "Peak RSS is the process peak from the start of the row's build to the end of its search; it includes the "
        "benchmark's own float32 corpus array (4*dim bytes per vector), which the next column leaves out (peak minus "
        "the RSS just before the build: the index, its training sample and search buffers). Bytes/vector is the "
        "serialised index's marginal size.",
        "",
        rows_table(result).rstrip("\n"),
        "",
    ]
    served = served_table(result)
    if served:
        lines += [
            "## Served from an index directory",
            "",
            "Each index saved as an index directory (fp16 vector file, SQLite document store of synthetic "
            f"300-character snippets) and opened in a fresh process as `semsearch serve` opens it (index.faiss "
            f"{'memory-mapped' if spec.get('serve_mmap') else 'read whole'}), on 1 thread: a query is the search, "
            "the rescoring from the vector file and the hits' documents read from the store. Resident B/vector is "
            f"measured after {spec.get('warm_queries')} warm queries: the growth of anonymous memory since the imports "
            "plus the resident pages of every mapped file of the directory except the vector file (reported apart). "
            f"Cold: before each of {spec.get('cold_queries')} queries the vector file's pages are dropped from the "
            "process (MADV_DONTNEED) and the page cache (POSIX_FADV_DONTNEED), so rescoring reads come from disk.",
            "",
            served.rstrip("\n"),
            "",
        ]
    lines += [
        "## How the vectors were made",
        "",
        vectors["method"] + ".",
        "",
        f"Source: `{vectors['source']}` ({vectors['source_count']} x {vectors['dim']}). Real neighbour-score "
        f"profile (each source against the {vectors['source_count'] - 1} others): mean top-1 cosine "
        f"{vectors['source_nearest_other_source_cosine']:.3f}, mean top-{k}th "
        f"{vectors.get('source_kth_other_source_cosine', float('nan')):.3f}.",
        "",
        f'"Source" of a synthetic vector: {source_word}. Same-source share of exact top-{k}: the fraction of a '
        f"query's exact top-{k} whose source is the query's own (1.0: search is a lookup of one source's clump).",
        "",
        vectors_table(vectors, k).rstrip("\n"),
    ]
    if vectors.get("profile_vs_n"):
        lines += [
            "",
            f"Neighbour-score profile at the same N, real vs synthetic: real = {vectors['profile_held_out_queries']} "
            "held-out real embeddings searched in growing sets of the other real ones; synthetic = the benchmark's "
            "queries searched in the same-size prefix of the synthetic corpus. Scores rise with N (a denser corpus "
            "has closer neighbours), so a synthetic corpus larger than the sources should score above the sources' "
            "own profile given above.",
            "",
            profile_table(vectors, k).rstrip("\n"),
        ]
    clumped = [
        n for n, s in vectors["per_size"].items() if s["same_source_fraction_of_exact_top_k"] >= SAME_SOURCE_CAVEAT
    ]
    if clumped:
        lines += [
            "",
            f"Caveat: at N = {', '.join(f'{int(n):,}' for n in clumped)} nearly all of a query's exact top-{k} share "
            "its source, and their scores differ by little (compare the top-1 and top-k-th columns). Finding the "
            "right cluster is then easy but ordering near-ties is hard, which likely penalises lossy codes (PQ) "
            "more than a real corpus of that size would (untested): read those PQ recalls as a hard case.",
        ]
    lines += ["", "Plots: `scale_latency.png` (log-log p50 latency vs N), `scale_recall.png` "
              f"(recall@{k} vs N, log x).", ""]  # fmt: skip
    return "\n".join(lines)


def plot_scale(result: dict[str, Any], out_dir: Path) -> None:
    """Log-log latency vs N and recall vs N (log x), one line per index."""
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependencyError("plots need matplotlib: `pip install matplotlib`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result["spec"]["k"]
    by_index: dict[str, list[dict[str, Any]]] = {}
    for row in result["rows"]:
        by_index.setdefault(row["index"], []).append(row)
    threads = result["machine"]["threads"]
    for name, key, ylabel, log_y in (
        ("scale_latency.png", "latency_ms_p50", f"search latency per query, p50 ms (batch 1, {threads} thread)", True),
        ("scale_recall.png", f"recall@{k}", f"recall@{k} vs exact", False),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, rows in by_index.items():
            rows = sorted(rows, key=lambda r: r["n"])
            (line,) = ax.plot([r["n"] for r in rows], [r[key] for r in rows], marker="o", label=label)
            if log_y:
                ax.plot([r["n"] for r in rows], [r["latency_ms_p95"] for r in rows], linestyle=":",
                        color=line.get_color(), alpha=0.7)  # fmt: skip
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
            ax.set_title("Latency vs corpus size (solid p50, dotted p95)")
        else:
            ax.set_title(f"Recall@{k} vs corpus size")
        ax.set_xlabel("N (vectors)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
