"""`semsearch bench-students`: every student x precision on one recall-vs-latency frontier (see
`search.bench.students`), with the teacher and the naive int8 MiniLM added as reference rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from search.cli.base import AsJson, app, console, print_json, run_or_exit, threads_option
from search.jobs.main_job import MainJobSpec

DEFAULTS = MainJobSpec()  # held-out slice, budget, seed, runs folder and the naive reference as the main job has them


@app.command(name="bench-students")
def bench_students(
    candidate: Annotated[
        list[str],
        typer.Option(
            metavar="NAME=PATH[:asym|:sym]",
            help="a built student to measure (repeat): an ONNX, static or model folder (or fake:DIM); asym "
            "(default) searches the teacher's documents, sym the student's own",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="where results.json, table.md and frontier.png go")] = (
        DEFAULTS.runs_dir / "bench-students"
    ),
    dataset: Annotated[str, typer.Option(help="dataset with qrels")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split to evaluate on")] = "test",
    heldout_texts: Annotated[
        int,
        typer.Option(
            help="held-out training texts for the cosine to the teacher: the first N of the seeded training texts, "
            "the main job's validation slice (never trained on while N <= its validation_texts)"
        ),
    ] = DEFAULTS.validation_texts,
    family: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=FAMILY (repeat): a candidate's family, e.g. s1=teacher-slice (default: static/student)"
        ),
    ] = None,
    teacher: Annotated[str, typer.Option(help="teacher encoder spec")] = "teacher",
    naive_int8: Annotated[
        str | None,
        typer.Option(help="naive int8 MiniLM reference (default: minilm quantized and cached as the main job does)"),
    ] = None,
    budget_ratio: Annotated[float, typer.Option(help="budget pick: encode p50 <= teacher's / this")] = (
        DEFAULTS.budget_ratio
    ),
    latency_queries: Annotated[int | None, typer.Option(help="time only the first N queries (default all)")] = None,
    threads: Annotated[int | None, threads_option("onnxruntime, torch and BLAS threads")] = None,
    seed: Annotated[int, typer.Option(help="seed of the held-out text shuffle (the main job's)")] = DEFAULTS.seed,
    as_json: AsJson = False,
) -> None:
    """Recall@10 vs teacher against query encode p50 for every student, Pareto flags, cosine-vs-recall correlation."""
    from search.bench.students import naive_reference, parse_candidate, run_student_bench
    from search.data.datasets import load_dataset
    from search.data.training_texts import training_texts
    from search.evaluation.agreement import query_like

    def action() -> dict[str, Any]:
        families = dict(item.partition("=")[::2] for item in family or [])
        candidates = [parse_candidate(text) for text in candidate]
        candidates = [replace(c, family=families[c.name]) if c.name in families else c for c in candidates]
        unknown = set(families) - {c.name for c in candidates}
        if unknown:
            raise ValueError(f"--family names unknown candidates {sorted(unknown)}; candidates: "
                             f"{', '.join(c.name for c in candidates)}")  # fmt: skip
        data = load_dataset(dataset)
        naive = naive_int8
        if naive is None:
            from search.jobs.students import base_model_int8

            calibration = [doc.full_text() for doc in data.corpus[:256]]
            naive = str(base_model_int8(DEFAULTS.reference or "minilm", DEFAULTS.quantization, calibration))
        held = training_texts(data, max_texts=heldout_texts, seed=seed) if heldout_texts > 0 else []
        heldout = query_like(held) if held else []  # the query-like ones, as the main job's pick uses
        return run_student_bench(data, split, [*candidates, naive_reference(naive)], teacher, out, heldout,
                                 threads=threads, budget_ratio=budget_ratio, latency_queries=latency_queries,
                                 show_progress=True)  # fmt: skip

    results = run_or_exit(action)
    if as_json:
        print_json(results)
        return
    table = Table(title=f"students vs teacher ({out})")
    for column in ("candidate", "family", "prec", "R@10 vs teacher", "nDCG@10", "encode ms p50", "model MB",
                   "cosine", "pareto", "beats MiniLM int8"):  # fmt: skip
        table.add_column(column)
    for row in results["rows"]:
        cosine = "" if row["heldout_cosine"] is None else f"{row['heldout_cosine']:.3f}"
        table.add_row(row["name"], row["family"], row["precision"], f"{row['recall@10_vs_teacher']:.3f}",
                      f"{row['ndcg@10']:.4f}", f"{row['encode_ms_p50']:.3g}", f"{row['model_bytes'] / 1e6:.1f}",
                      cosine, "*" if row["pareto"] else "", {True: "yes", False: "NO", None: ""}[
                          row["beats_minilm_int8"]])  # fmt: skip
    console.print(table)
    corr = results["correlation"]
    console.print(f"held-out cosine vs R@10 vs teacher over {corr['n']} students: pearson {corr['pearson']}, "
                  f"spearman {corr['spearman']}")  # fmt: skip
    console.print(f"budget pick: {results['budget_pick']['name']}: {results['budget_pick']['reason']}")
