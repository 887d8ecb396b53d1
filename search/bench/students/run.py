"""`run_student_bench`: every candidate and the references measured in one run, written as results.json, table.md
and frontier.png."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compression.encoders import Encoder
from search.bench.student_plots import write_frontier_plot
from search.bench.students.measure import (
    Candidate,
    check_fits_teacher,
    load_candidate_encoder,
    measure_candidate,
    prepare_context,
)
from search.bench.students.select import annotate_rows, cosine_recall_correlation
from search.data.datasets import Dataset, load_dataset
from search.evaluation.agreement import interleaved_encode_ms
from search.selection import budget_pick
from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.machine import machine_info
from semsearch_common.tables import markdown_table
from semsearch_common.threads import limit_threads, resolve_threads
from semsearch_common.timing import WARMUP_CALLS

logger = logging.getLogger(__name__)

TEACHER_ROW = "teacher"
NAIVE_ROW = "minilm-int8"
REFERENCE_FAMILY = "reference"
PICK_METRIC = "heldout_recall@10_vs_teacher"
LATENCY_METHOD = (
    f"interleaved: for each query every encoder takes its turn, one query at a time (batch 1), after {WARMUP_CALLS} "
    "untimed warm-up calls each, so machine noise hits all alike"
)
FILES = ("results.json", "table.md", "frontier.png")


def naive_reference(query: str) -> Candidate:
    """The naive int8 MiniLM row: off-the-shelf MiniLM quantized, searching its own document vectors."""
    return Candidate(NAIVE_ROW, REFERENCE_FAMILY, "int8", query, docs="own")


def run_student_bench(
    dataset: str | Dataset, split: str, candidates: Sequence[Candidate], teacher: str, out_dir: Path,
    heldout_texts: Sequence[str], threads: int | None = None, budget_ratio: float = 15.0,
    latency_queries: int | None = None, loader: Callable[[str, int | None], Encoder] = load_candidate_encoder,
    show_progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Measure the teacher row (added first) and every candidate on `split`, write results.json, table.md and
    frontier.png into `out_dir`, and return the results.

    `heldout_texts` give the held-out cosine to the teacher: the caller must pass texts held out from the students'
    training (e.g. the main job's validation slice of `search.data.training_texts`), never test queries. A candidate
    named `minilm-int8` (see `naive_reference`) is the row every other must beat or tie. `threads` (onnxruntime,
    torch and BLAS) defaults to every core this process may use.
    """
    threads = resolve_threads(threads)
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    rows_for = [Candidate(TEACHER_ROW, REFERENCE_FAMILY, "fp32", teacher), *candidates]
    names = [c.name for c in rows_for]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique (and not {TEACHER_ROW!r}), got {', '.join(names)}")
    with limit_threads(threads):
        loaded: dict[str, Encoder] = {}
        for spec in dict.fromkeys(c.query for c in rows_for):
            loaded[spec] = loader(spec, threads)
        encoders = {c.name: loaded[c.query] for c in rows_for}
        for candidate in rows_for:  # before any encoding
            check_fits_teacher(candidate, encoders[candidate.name], encoders[TEACHER_ROW])
        context = prepare_context(data, split, encoders[TEACHER_ROW], heldout_texts, show_progress)
        timed = context.query_texts[:latency_queries] if latency_queries else context.query_texts
        logger.info("timing %d encoders on %d queries, interleaved", len(encoders), len(timed))
        seconds = interleaved_encode_ms(encoders, timed)
        rows = [measure_candidate(c, encoders[c.name], context, seconds[c.name], show_progress) for c in rows_for]
    annotate_rows(rows, TEACHER_ROW, NAIVE_ROW if NAIVE_ROW in names else None)
    teacher_ms = rows[0]["encode_ms_p50"]
    eligible = [r for r in rows if r["family"] != REFERENCE_FAMILY and r[PICK_METRIC] is not None]
    try:  # on held-out figures, as the main job picks: test queries choose nothing
        row, reason = budget_pick(eligible, teacher_ms, budget_ratio, metric=PICK_METRIC)
        pick: dict[str, Any] = {"name": row["name"], "metric": PICK_METRIC, "reason": reason}
    except ValueError as err:
        pick = {"name": None, "metric": PICK_METRIC, "reason": str(err)}
    results = {
        "dataset": data.name,
        "split": split,
        "queries": len(context.query_texts),
        "latency_queries": len(timed),
        "latency": LATENCY_METHOD,
        "heldout_texts": len(context.heldout_texts),
        "threads": threads,
        "budget_ratio": budget_ratio,
        "budget_pick": pick,
        "correlation": cosine_recall_correlation(rows, REFERENCE_FAMILY),
        "rows": rows,
        "machine": machine_info(threads),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / FILES[0], results)
    write_text_atomic(out_dir / FILES[1], results_markdown(results))
    write_frontier_plot(rows, out_dir / FILES[2], teacher=TEACHER_ROW, naive=NAIVE_ROW,
                        budget_ms=teacher_ms / budget_ratio)  # fmt: skip
    return results


HEADERS = ("candidate", "family", "precision", "documents", "R@10 vs teacher", "nDCG@10", "R@100", "encode ms p50",
           "encode ms p95", "speed-up", "model MB", "held-out cosine", "Pareto", "beats MiniLM int8")  # fmt: skip


def row_cells(row: Mapping[str, Any]) -> list[Any]:
    """One table.md line, numbers pre-formatted (recall to 3 decimals, nDCG to 4, latency to 3 significant)."""
    beats = {None: None, True: "yes", False: "**no**"}[row["beats_minilm_int8"]]
    return [
        row["name"], row["family"], row["precision"], "teacher's (asym)" if row["docs"] == "teacher" else "own (sym)",
        f"{row['recall@10_vs_teacher']:.3f}", f"{row['ndcg@10']:.4f}", f"{row['recall@100']:.3f}",
        f"{row['encode_ms_p50']:.3g}", f"{row['encode_ms_p95']:.3g}", f"{row['speedup_vs_teacher']:.1f}x",
        f"{row['model_bytes'] / 1e6:.1f}", row["heldout_cosine"], "*" if row["pareto"] else "", beats,
    ]  # fmt: skip


def results_markdown(results: Mapping[str, Any]) -> str:
    """table.md: the setting, one line per row, the cosine-vs-recall correlation and the budget pick."""
    corr = results["correlation"]

    def number(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.3f}"

    machine = results["machine"]
    return "\n".join([
        f"# Students on {results['dataset']} ({results['split']} split): recall@10 vs teacher against query encode "
        "latency",
        "",
        f"{results['queries']} queries, exact search (inner product over unit vectors); R@10 vs teacher is the "
        "overlap with the teacher's exact top-10. Asymmetric rows search the teacher's document vectors.",
        f"Latency over {results['latency_queries']} queries, {LATENCY_METHOD}; threads: {results['threads']}, on "
        f"{machine['cpu']} ({machine['cores']} cores). Pareto: not beaten on both R@10 vs teacher and encode p50.",
        "",
        markdown_table(HEADERS, [row_cells(row) for row in results["rows"]]).rstrip("\n"),
        "",
        f"Held-out cosine to the teacher vs R@10 vs teacher over {corr['n']} students "
        f"({results['heldout_texts']} held-out training texts, never test queries): Pearson r = "
        f"{number(corr['pearson'])}, Spearman rho = {number(corr['spearman'])}.",
        f"Budget pick on held-out R@10 vs teacher (encode p50 <= teacher / {results['budget_ratio']:g}): "
        f"{results['budget_pick']['name'] or 'none'}: {results['budget_pick']['reason']}.",
        "",
    ])  # fmt: skip
