"""`semsearch run`: the main job (teacher and compressed pipelines, side by side), see `search.jobs.main_job`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from search.cli.base import AsJson, app, print_json, run_or_exit
from search.jobs.main_job import MainJobResult, MainJobSpec, main_job_spec, run_main_job, side_by_side

DEFAULTS = MainJobSpec()


@app.command(name="run")
def run_main(
    dataset: Annotated[str, typer.Option(help="dataset with qrels (a BEIR folder or a named dataset)")] = (
        DEFAULTS.dataset
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="a labelled subset (judged docs + distractors), short distillation")
    ] = False,
    compressed_index: Annotated[str | None, typer.Option(help="FAISS factory of the compressed pipelines")] = None,
    quantization: Annotated[str, typer.Option(help="int8 mode: dynamic or static")] = DEFAULTS.quantization,
    distill_texts: Annotated[int | None, typer.Option(help="training texts for the students")] = None,
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
    runs_dir: Annotated[Path, typer.Option(help="where the index directories go")] = DEFAULTS.runs_dir,
    threads: Annotated[int, typer.Option(help="torch and onnxruntime threads")] = DEFAULTS.threads,
    as_json: AsJson = False,
) -> None:
    """The main job: teacher pipeline, compressed pipeline (distil, int8, compressed index), side by side."""

    def action() -> MainJobResult:
        spec = main_job_spec(
            dataset=dataset,
            quick=quick,
            quantization=quantization,
            runs_dir=runs_dir,
            threads=threads,
            compressed_index=compressed_index,
            distill_texts=distill_texts,
            students=tuple(student) if student else DEFAULTS.students,
            budget_ratio=budget_ratio,
            large=large,
        )
        return run_main_job(spec, show_progress=not as_json)

    result = run_or_exit(action)
    if as_json:
        print_json(result.to_dict())
    else:
        typer.echo(side_by_side(result))
