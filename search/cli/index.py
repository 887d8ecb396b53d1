"""`semsearch index`, `search` and `eval`: build an index directory, query it, evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from search.cli.base import (
    AsJson,
    IndexDirOption,
    app,
    check_index_dir,
    console,
    parse_params,
    print_json,
    print_mapping,
    run_or_exit,
)


@app.command()
def index(
    out: Annotated[Path, typer.Option("--out", help="index directory to write")],
    dataset: Annotated[str, typer.Option(help="scifact, a BEIR folder, a .jsonl/.csv/.tsv file or a .txt folder")],
    encoder: Annotated[
        str, typer.Option(help="query encoder: teacher, minilm, an ST folder, an ONNX folder (student:DIR), fake:DIM")
    ] = "teacher",
    index_factory: Annotated[
        str, typer.Option("--index", help="FAISS factory, e.g. Flat, HNSW32, IVF256,PQ48")
    ] = "Flat",
    doc_encoder: Annotated[
        str | None, typer.Option(help="asymmetric mode: encode documents with this (e.g. teacher) instead")
    ] = None,
    params: Annotated[str | None, typer.Option(help="default search parameters, e.g. nprobe=16")] = None,
    train_sample: Annotated[int, typer.Option(help="max vectors used to train the index")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed for the training sample and k-means")] = 0,
    batch_size: Annotated[int, typer.Option(help="encoding batch size")] = 32,
    threads: Annotated[int | None, typer.Option(help="torch threads for encoding")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="re-encode even if cached")] = False,
    on_bad_record: Annotated[
        str,
        typer.Option(
            help="a bad corpus record (wrong type, empty text, duplicate id, broken quoting, bad bytes): fail (exit 2, "
            "naming file and line) or skip (leave it out, warn, count it in meta.json's skipped_records)"
        ),
    ] = "fail",
    as_json: AsJson = False,
) -> None:
    """Encode a corpus (cached) and build a FAISS index directory."""
    from compression.encoders import load_encoder
    from indexes.faiss_index import IndexSpec, validate_factory
    from search.data.datasets import load_dataset
    from search.pipeline import build_index_dir

    def action() -> dict[str, Any]:
        spec = IndexSpec(index_factory, train_sample=train_sample, seed=seed, search_params=parse_params(params))
        data = load_dataset(dataset, on_bad_record=on_bad_record)
        query_encoder = load_encoder(encoder, threads=threads)
        docs_encoder = load_encoder(doc_encoder, threads=threads) if doc_encoder else None
        validate_factory(index_factory, query_encoder.dim)
        report = build_index_dir(data, query_encoder, spec, out, batch_size=batch_size, use_cache=not no_cache,
                                 show_progress=not as_json, doc_encoder=docs_encoder)  # fmt: skip
        return {**report.summary(), "skipped_records": report.meta.get("skipped_records", 0)}

    print_mapping("index built", run_or_exit(action), as_json)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="the query")],
    index_dir: IndexDirOption,
    k: Annotated[int, typer.Option("-k", help="number of hits")] = 10,
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Search an index directory for one query."""
    from search.pipeline import Pipeline, result_as_dict

    def action() -> dict[str, Any]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        check_index_dir(index_dir)
        pipeline = Pipeline.load(index_dir, threads=threads, search_params=parse_params(params))
        return result_as_dict(pipeline.search(text, k))

    result = run_or_exit(action)
    if as_json:
        print_json(result)
        return
    table = Table(title=f"top {len(result['hits'])} for {text!r}")
    for column in ("rank", "id", "score", "title"):
        table.add_column(column)
    for rank, hit in enumerate(result["hits"], start=1):
        table.add_row(str(rank), hit["id"], f"{hit['score']:.4f}", hit["title"][:90])
    console.print(table)
    t = result["timings"]
    console.print(f"encode {t['encode_ms']:.1f} ms, search {t['search_ms']:.2f} ms, total {t['total_ms']:.1f} ms")


@app.command(name="eval")
def evaluate_command(
    index_dir: IndexDirOption,
    dataset: Annotated[str, typer.Option(help="the dataset the index was built on (needs qrels)")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
    teacher_index: Annotated[
        Path | None, typer.Option(help="the teacher's index dir: adds recall@10_vs_teacher (its exact top-10)")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate an index: nDCG@10, recall@100, MRR@10, recall vs exact (and vs teacher), latency, bytes."""
    from search.data.datasets import load_dataset
    from search.evaluation.evaluate import evaluate
    from search.pipeline import Pipeline

    def action() -> dict[str, Any]:
        for folder in (index_dir, teacher_index):
            if folder is not None:
                check_index_dir(folder)
        pipeline = Pipeline.load(index_dir, threads=threads, search_params=parse_params(params))
        reference = Pipeline.load(teacher_index, threads=threads) if teacher_index else None
        return evaluate(pipeline, load_dataset(dataset), split=split, reference=reference, show_progress=not as_json)

    print_mapping(f"evaluation of {index_dir}", run_or_exit(action), as_json)
