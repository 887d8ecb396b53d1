"""`semsearch run`: the main job (teacher and compressed pipelines, side by side), see `search.jobs.main_job`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from search.cli.base import AsJson, app, print_json, run_or_exit, threads_option
from search.cli.choices import Precision, QuantizationMode
from search.jobs.main_job import MainJobResult, MainJobSpec, main_job_spec, run_main_job, side_by_side
from semsearch_common.threads import resolve_threads

DEFAULTS = MainJobSpec()


@app.command(name="run")
def run_main(
    dataset: Annotated[str, typer.Option(help="dataset with qrels (a BEIR folder or a named dataset)")] = (
        DEFAULTS.dataset
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="a labelled subset (judged docs + distractors), short distillation")
    ] = False,
    compressed_index: Annotated[
        str | None,
        typer.Option(
            help="FAISS factory of the compressed pipelines (default auto: the smallest codes whose recall@10 vs "
            "exact search reaches 0.99 on held-out texts)"
        ),
    ] = None,
    quantization: Annotated[QuantizationMode, typer.Option(help="int8 mode of the students")] = DEFAULTS.quantization,
    distill_texts: Annotated[
        int | None, typer.Option(help="corpus training texts (sentences, windows, train queries) for the students")
    ] = None,
    pseudo_queries: Annotated[
        int | None,
        typer.Option(
            help=f"pseudo-queries cut from the corpus, added to the training texts \\[default: "
            f"{DEFAULTS.pseudo_queries}; --quick {DEFAULTS.quick_pseudo_queries}; "
            f"--large {DEFAULTS.large_pseudo_queries}]"
        ),
    ] = None,
    student: Annotated[
        list[str] | None,
        typer.Option(help="a candidate student (repeat): teacher-layers:i,j, minilm, minilm-layers:i,j, static"),
    ] = None,
    budget_ratio: Annotated[
        float, typer.Option(help="ship the best student encoding a query within teacher's time / this")
    ] = DEFAULTS.budget_ratio,
    large: Annotated[
        bool, typer.Option("--large", help="the bigger recipe: every training text, more epochs (hours on 2 cores)")
    ] = False,
    teacher_precision: Annotated[
        Precision,
        typer.Option(
            help="the teacher's corpus pass and queries (auto: bf16 where the CPU has it natively, else fp32)"
        ),
    ] = DEFAULTS.teacher_precision,
    runs_dir: Annotated[Path, typer.Option(help="where the index directories go")] = DEFAULTS.runs_dir,
    threads: Annotated[int | None, threads_option("torch and onnxruntime threads")] = None,
    as_json: AsJson = False,
) -> None:
    """The main job: teacher pipeline, compressed pipeline (distil, int8, compressed index), side by side."""

    def action() -> MainJobResult:
        spec = main_job_spec(
            dataset=dataset,
            quick=quick,
            quantization=quantization.value,
            runs_dir=runs_dir,
            threads=resolve_threads(threads),
            compressed_index=compressed_index,
            distill_texts=distill_texts,
            pseudo_queries=pseudo_queries,
            students=tuple(student) if student else DEFAULTS.students,
            budget_ratio=budget_ratio,
            large=large,
            teacher_precision=teacher_precision.value,
        )
        return run_main_job(spec, show_progress=True)

    result = run_or_exit(action)
    if as_json:
        print_json(result.to_dict())
    else:
        typer.echo(side_by_side(result))
