"""The `semsearch` command line: a thin layer over the pipeline, evaluator and API functions."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from compression.models import ModelNotAvailableError
from indexes.store import IndexDirError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compressed-model semantic search.")
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ModelNotAvailableError, IndexDirError, ImportError)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`; turn expected errors into a one-line message and exit status 2."""
    try:
        return action()
    except EXPECTED_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2) from err


def print_mapping(title: str, values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(values, indent=2, default=str) + "\n")
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def parse_params(text: str | None) -> dict[str, float]:
    from indexes.faiss_index import parse_search_params

    return parse_search_params(text) if text else {}


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
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Encode a corpus (cached) and build a FAISS index directory."""
    from compression.encoders import load_encoder
    from indexes.faiss_index import IndexSpec, validate_factory
    from search.data.datasets import load_dataset
    from search.pipeline import build_index_dir

    def action() -> dict[str, Any]:
        spec = IndexSpec(index_factory, train_sample=train_sample, seed=seed, search_params=parse_params(params))
        data = load_dataset(dataset)
        enc = load_encoder(encoder, threads=threads)
        docs_enc = load_encoder(doc_encoder, threads=threads) if doc_encoder else None
        validate_factory(index_factory, enc.dim)
        report = build_index_dir(
            data,
            enc,
            spec,
            out,
            batch_size=batch_size,
            use_cache=not no_cache,
            show_progress=not as_json,
            doc_encoder=docs_enc,
        )
        meta = report.meta
        return {
            "out": str(report.out_dir),
            "dataset": data.name,
            "documents": meta["ntotal"],
            "encoder": meta["encoder"]["name"],
            "doc_encoder": meta["doc_encoder"]["name"],
            "mode": meta["mode"],
            "index": meta["factory"],
            "search_params": meta["search_params"],
            "bytes_per_vector": meta["bytes_per_vector"],
            "index_bytes": meta["index_bytes"],
            "embeddings_from_cache": meta["build"]["encode_from_cache"],
            "train_seconds": meta["build"]["train_seconds"],
            "total_seconds": meta["build"]["total_seconds"],
        }

    print_mapping("index built", run_or_exit(action), as_json)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="the query")],
    index_dir: Annotated[Path, typer.Option(help="index directory from `semsearch index`")],
    k: Annotated[int, typer.Option("-k", help="number of hits")] = 10,
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Search an index directory for one query."""
    from search.pipeline import Pipeline, result_as_dict

    def action() -> dict[str, Any]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        pipeline = Pipeline.load(index_dir, threads=threads, search_params=parse_params(params))
        return result_as_dict(pipeline.search(text, k))

    result = run_or_exit(action)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
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
    index_dir: Annotated[Path, typer.Option(help="index directory from `semsearch index`")],
    dataset: Annotated[str, typer.Option(help="the dataset the index was built on (needs qrels)")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
    teacher_index: Annotated[
        Path | None, typer.Option(help="the teacher's index dir: adds recall@10_vs_teacher (its exact top-10)")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Evaluate an index: nDCG@10, recall@100, MRR@10, recall vs exact (and vs teacher), latency, bytes."""
    from search.data.datasets import load_dataset
    from search.evaluation.evaluate import evaluate
    from search.pipeline import Pipeline

    def action() -> dict[str, Any]:
        pipeline = Pipeline.load(index_dir, threads=threads, search_params=parse_params(params))
        reference = Pipeline.load(teacher_index, threads=threads) if teacher_index else None
        return evaluate(pipeline, load_dataset(dataset), split=split, reference=reference, show_progress=not as_json)

    print_mapping(f"evaluation of {index_dir}", run_or_exit(action), as_json)


@app.command()
def distill(
    out: Annotated[Path, typer.Option("--out", help="folder for the distilled sentence-transformers student")],
    dataset: Annotated[str, typer.Option(help="training texts: corpus sentences and TRAIN queries, never test")] = (
        "scifact"
    ),
    student: Annotated[str, typer.Option(help="minilm, teacher-layers:N, or a sentence-transformers folder")] = (
        "minilm"
    ),
    teacher: Annotated[str, typer.Option(help="teacher, minilm or a folder")] = "teacher",
    loss: Annotated[str, typer.Option(help="mse, kl, mse+kl, rank or mse+rank (see DistillConfig)")] = "rank",
    kl_weight: Annotated[float, typer.Option(help="weight of the KL term in mse+kl")] = 1.0,
    temperature: Annotated[float, typer.Option(help="softmax temperature of the KL term")] = 0.05,
    epochs: Annotated[int, typer.Option(help="passes over the training texts")] = 1,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, linear warmup/decay)")] = 2e-5,
    batch_size: Annotated[int, typer.Option(help="texts per step (also the in-batch set of the KL term)")] = 32,
    max_seq_length: Annotated[int, typer.Option(help="tokens per text, student and teacher")] = 128,
    max_texts: Annotated[int | None, typer.Option(help="cap on training texts (seeded shuffle first)")] = 8_000,
    eval_texts: Annotated[int, typer.Option(help="held-out texts for the before/after cosine")] = 256,
    seed: Annotated[int, typer.Option(help="seed for the text shuffle and training")] = 0,
    projection: Annotated[
        str, typer.Option(help="auto: project to the teacher's dim (needed for asymmetric search); never: keep own dim")
    ] = "never",
    batching: Annotated[str, typer.Option(help="random, or neighbours (k-means clustered batches for the KL term)")] = (
        "random"
    ),
    label_boost: Annotated[
        float, typer.Option(help="rank losses: teacher-logit boost of the documents judged relevant to train queries")
    ] = 3.0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Distil the teacher into a student (MSE and/or in-batch similarity KL); teacher targets are cached."""
    from compression.distill import DistillConfig
    from search.data.datasets import load_dataset
    from search.jobs.distill import distill_on_dataset

    def action() -> dict[str, Any]:
        config = DistillConfig(
            student=student,
            teacher=teacher,
            loss=loss,
            kl_weight=kl_weight,
            temperature=temperature,  # type: ignore[arg-type]
            epochs=epochs,
            learning_rate=lr,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            max_texts=None,
            seed=seed,
            projection=projection,  # type: ignore[arg-type]
            batching=batching,  # type: ignore[arg-type]
            label_boost=label_boost,
        )
        report = distill_on_dataset(load_dataset(dataset), config, out, max_texts, eval_texts, seed, device=device,
                                    threads=threads, show_progress=not as_json)  # fmt: skip
        return {"out": str(out), **report.to_dict()}

    print_mapping("distillation", run_or_exit(action), as_json)


@app.command()
def quantize(
    model: Annotated[str, typer.Option(help="sentence-transformers folder (a distilled student), minilm or teacher")],
    out: Annotated[Path, typer.Option("--out", help="output folder: fp32/ and int8/ ONNX model folders")],
    mode: Annotated[str, typer.Option(help="int8 mode: dynamic or static (QDQ, calibrated on corpus text)")] = (
        "dynamic"
    ),
    dataset: Annotated[str, typer.Option(help="calibration corpus and TRAIN queries for the quality gate")] = (
        "scifact"
    ),
    tolerance: Annotated[float, typer.Option(help="largest allowed nDCG@10 drop of int8 vs fp32")] = 0.005,
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 when the gate fails (default: warn)")] = False,
    gate_docs: Annotated[int, typer.Option(help="distractor documents in the gate's corpus subset")] = 2000,
    calibration_texts: Annotated[int, typer.Option(help="corpus passages for static calibration")] = 256,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Export to ONNX (fp32), quantize to int8, and print size, latency and the train-split quality gate."""
    import numpy as np

    from compression.encoders.onnx import ONNX_MODEL_FILE, OnnxEncoder
    from compression.models import model_bytes, resolve_model
    from compression.onnx_export import export_onnx
    from compression.quantize import QUANTIZATION_MODES, quantize_onnx
    from search.data.datasets import load_dataset
    from search.evaluation.evaluate import encode_latency_ms
    from search.evaluation.quantize_gate import quality_gate

    def action() -> dict[str, Any]:
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(QUANTIZATION_MODES)}")
        data = load_dataset(dataset)
        source = resolve_model(model)
        fp32_dir = export_onnx(source.path, out / "fp32")
        calibration = None
        if mode == "static":
            rng = np.random.default_rng(0)
            picked = rng.choice(len(data.corpus), size=min(calibration_texts, len(data.corpus)), replace=False)
            calibration = [data.corpus[i].full_text() for i in sorted(picked)]
        int8_dir = quantize_onnx(fp32_dir, out / "int8", mode=mode, calibration_texts=calibration)  # type: ignore[arg-type]
        fp32, int8 = OnnxEncoder(fp32_dir, threads=threads), OnnxEncoder(int8_dir, threads=threads)
        _, train_texts, _ = data.split_queries("train")
        gate = quality_gate(fp32, int8, data, split="train", tolerance=tolerance, distractors=gate_docs)
        fp32_latency, int8_latency = (
            encode_latency_ms(fp32, train_texts[:100]),
            encode_latency_ms(int8, train_texts[:100]),
        )
        return {
            "out": str(out),
            "mode": mode,
            "fp32_model_bytes": (fp32_dir / ONNX_MODEL_FILE).stat().st_size,
            "int8_model_bytes": (int8_dir / ONNX_MODEL_FILE).stat().st_size,
            "int8_folder_bytes": model_bytes(int8_dir),
            "fp32_encode_ms_p50": fp32_latency["encode_ms_p50"],
            "int8_encode_ms_p50": int8_latency["encode_ms_p50"],
            "latency_queries": "first 100 train queries, batch 1",
            **{f"gate_{key}": value for key, value in gate.to_dict().items()},
        }

    result = run_or_exit(action)
    print_mapping("quantization", result, as_json)
    if not result["gate_passed"]:
        typer.echo(
            f"warning: int8 loses {result['gate_ndcg_drop']:.4f} nDCG@10 on {result['gate_split']} queries, "
            f"more than the tolerance {tolerance}",
            err=True,
        )
        if strict:
            raise typer.Exit(code=1)


@app.command(name="run")
def run_main(
    dataset: Annotated[str, typer.Option(help="dataset with qrels (BEIR layout or a name in data/datasets.json)")] = (
        "scifact"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="a labelled subset (judged docs + distractors), short distillation")
    ] = False,
    compressed_index: Annotated[str | None, typer.Option(help="FAISS factory of the compressed pipelines")] = None,
    quantization: Annotated[str, typer.Option(help="int8 mode: dynamic or static")] = "dynamic",
    distill_texts: Annotated[int | None, typer.Option(help="training texts for the student")] = None,
    runs_dir: Annotated[Path, typer.Option(help="where the index directories go")] = Path("runs"),
    threads: Annotated[int, typer.Option(help="torch and onnxruntime threads")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The main job: teacher pipeline, compressed pipeline (distil, int8, compressed index), side by side."""
    from dataclasses import replace

    from search.jobs.main_job import MainJobSpec, run_main_job, side_by_side

    def action() -> Any:
        spec = MainJobSpec(dataset=dataset, quick=quick, quantization=quantization, runs_dir=runs_dir, threads=threads)
        if compressed_index is not None:
            spec = replace(spec, compressed_index=compressed_index, quick_compressed_index=compressed_index)
        if distill_texts is not None:
            spec = replace(spec, distill_texts=distill_texts, quick_distill_texts=distill_texts)
        return run_main_job(spec, show_progress=not as_json)

    result = run_or_exit(action)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        typer.echo(side_by_side(result))


@app.command(name="bench-compression")
def bench_compression(
    student: Annotated[str, typer.Option(help="the distilled student (sentence-transformers folder)")],
    student_int8: Annotated[str, typer.Option(help="its int8 ONNX folder (from `semsearch quantize`, int8/)")],
    out: Annotated[Path, typer.Option("--out", help="where summary.json, summary.md and pipelines.json go")] = Path(
        "benchmarks/compression"
    ),
    dataset: Annotated[str, typer.Option(help="dataset with qrels")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split to evaluate on")] = "test",
    teacher: Annotated[str, typer.Option(help="teacher encoder spec")] = "teacher",
    minilm: Annotated[str, typer.Option(help="off-the-shelf baseline encoder spec")] = "minilm",
    threads: Annotated[int, typer.Option(help="torch and onnxruntime threads")] = 2,
    throughput_docs: Annotated[int, typer.Option(help="documents timed for corpus throughput")] = 128,
    doc_tower: Annotated[
        str | None, typer.Option(help="int8 base student that encodes documents for a student distilled against it")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Teacher vs MiniLM vs distilled student (fp32, int8, asymmetric int8), side by side, in one run."""
    from search.bench.compression import CompressionBenchSpec, run_compression_bench

    def action() -> dict[str, Any]:
        spec = CompressionBenchSpec(
            student=student,
            student_int8=student_int8,
            dataset=dataset,
            split=split,
            teacher=teacher,
            minilm=minilm,
            threads=threads,
            throughput_docs=throughput_docs,
            doc_tower=doc_tower,
        )
        summary = run_compression_bench(spec, out, show_progress=not as_json)
        return {key: value for key, value in summary.items() if not isinstance(value, dict)}

    print_mapping("compression benchmark", run_or_exit(action), as_json)


@app.command()
def bench(
    encoders: Annotated[
        str,
        typer.Option(
            help="comma list of label=spec, each optionally + @docspec (documents by another model) + ^fp32label "
            "(its fp32 counterpart), e.g. teacher,st=DIR,st-int8=ONNXDIR^st,asym=ONNXDIR@teacher"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for results.json/csv/md, plots, loss_split.json")] = Path(
        "benchmarks/bench"
    ),
    dataset: Annotated[str, typer.Option(help="dataset with qrels")] = "scifact",
    indexes: Annotated[str, typer.Option(help="';'-separated FAISS factories, e.g. 'Flat;HNSW32;IVF256,PQ48'")] = (
        "Flat"
    ),
    sweep: Annotated[str, typer.Option(help="e.g. 'nprobe=1,4,16;efSearch=16,64;k_factor=1,4'")] = "",
    teacher: Annotated[str, typer.Option(help="reference encoder: its exact top-10 is the ground truth")] = "teacher",
    doc_encoder: Annotated[
        str | None, typer.Option(help="document encoder for entries ending in a bare '@' (default: the teacher)")
    ] = None,
    budget_ms: Annotated[float | None, typer.Option(help="latency budget: total (encode + search) ms p50")] = None,
    budget_bytes: Annotated[float | None, typer.Option(help="memory budget: index bytes per document")] = None,
    split: Annotated[str, typer.Option(help="qrels split to evaluate on")] = "test",
    threads: Annotated[int, typer.Option(help="torch, onnxruntime and FAISS threads")] = 2,
    repeats: Annotated[int, typer.Option(help="searches per query; the fastest counts")] = 3,
    max_queries: Annotated[int | None, typer.Option(help="use only the first N queries of the split")] = None,
    train_sample: Annotated[int, typer.Option(help="max vectors used to train each index")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed for training samples and k-means")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Recall vs latency of every encoder x index x search-parameter setting, with Pareto frontier and budget pick."""
    from search.bench.ann import best_under_budget, format_params, make_bench_spec, run_bench

    def action() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        spec = make_bench_spec(encoders, indexes, sweep, doc_encoder=doc_encoder, teacher=teacher, dataset=dataset,
                               split=split, threads=threads, repeats=repeats, max_queries=max_queries,
                               budget_ms=budget_ms, budget_bytes=budget_bytes, train_sample=train_sample, seed=seed,
                               show_progress=not as_json)  # fmt: skip
        rows = run_bench(spec, out)
        budgeted = budget_ms is not None or budget_bytes is not None
        return rows, best_under_budget(rows, budget_ms, budget_bytes) if budgeted else None

    rows, budget = run_or_exit(action)
    if as_json:
        sys.stdout.write(json.dumps({"out": str(out), "rows": rows, "budget": budget}, indent=2) + "\n")
        return
    table = Table(title=f"recall vs latency ({out})")
    for column in ("encoder", "index", "params", "R@10 vs teacher", "nDCG@10", "total ms p50", "B/vec", "pareto"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["encoder"], row["index"], format_params(row["params"]), f"{row['recall@10_vs_teacher']:.3f}",
                      f"{row['ndcg@10']:.4f}", f"{row['total_ms_p50']:.3g}", f"{row['bytes_per_vector']:.4g}",
                      "*" if row["pareto"] else "")  # fmt: skip
    console.print(table)
    if budget is not None:
        console.print(budget["message"])


@app.command(name="bench-scale")
def bench_scale(
    vectors: Annotated[Path, typer.Option(help="(n, dim) .npy of real embeddings the corpus is grown from")],
    sizes: Annotated[str, typer.Option(help="corpus sizes N, comma-separated")] = "10000,100000,1000000",
    index_factory: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            help="FAISS factory, repeatable; {nlist} ~ 4*sqrt(N), {m} = dim/8 "
            "(default: Flat, IVF{nlist},PQ{m}, IVF{nlist},PQ{m},RFlat, HNSW32)",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="where scale.json/csv/md and the plots go")] = Path(
        "benchmarks/scale"
    ),
    queries: Annotated[int, typer.Option(help="queries scored for recall against exact search")] = 1000,
    latency_queries: Annotated[int, typer.Option(help="of those, queries timed one at a time")] = 200,
    repeats: Annotated[int, typer.Option(help="latency repeats (the best p50 is kept)")] = 2,
    threads: Annotated[int, typer.Option(help="FAISS and BLAS threads")] = 1,
    generator: Annotated[
        str, typer.Option(help="mix (points between real neighbours, default) or noise (noisy copies of one source)")
    ] = "mix",
    target_cosine: Annotated[
        float | None,
        typer.Option(help="mean cosine of a vector to its noise-free point (default: 0.87 for mix, 0.85 for noise)"),
    ] = None,
    noise: Annotated[str, typer.Option(help="noise shape: data (source covariance) or isotropic")] = "data",
    mix_neighbours: Annotated[int, typer.Option(help="mix: partners are drawn among this many nearest sources")] = 50,
    mix_alpha: Annotated[float, typer.Option(help="mix: Dirichlet concentration of the weights")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed for the vectors, training sample and k-means")] = 0,
    train_sample: Annotated[int, typer.Option(help="max vectors used to train IVF/PQ")] = 200_000,
    pq_m: Annotated[int | None, typer.Option(help="PQ bytes per vector for {m} (default dim/8)")] = None,
    params: Annotated[str | None, typer.Option(help="search parameter overrides, e.g. nprobe=32")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="FACTORY@N pair not to run, repeatable")] = None,
    note: Annotated[str, typer.Option(help="free text recorded with the results (e.g. machine load)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Latency, recall@10, memory and build time against N for Flat, HNSW and IVF-PQ, on vectors grown from real
    embeddings (mixes of real neighbours, or noisy copies); writes scale.json/csv/md and log-log plots."""
    from search.bench.scale import DEFAULT_INDEXES, ScaleBenchSpec, parse_sizes, row_summary, run_scale_bench

    def action() -> dict[str, Any]:
        spec = ScaleBenchSpec(
            vectors=vectors,
            sizes=parse_sizes(sizes),
            indexes=tuple(index_factory) if index_factory else DEFAULT_INDEXES,
            queries=queries,
            latency_queries=latency_queries,
            repeats=repeats,
            threads=threads,
            generator=generator,
            target_cosine=target_cosine,
            noise=noise,
            mix_neighbours=mix_neighbours,
            mix_alpha=mix_alpha,
            seed=seed,
            train_sample=train_sample,
            pq_m=pq_m,
            search_params=parse_params(params),
            skip=tuple(skip or ()),
            note=note,
        )
        result = run_scale_bench(spec, out)
        return {**{f"N={row['n']} {row['factory']}": row_summary(row) for row in result["rows"]}, "out": str(out)}

    print_mapping("scale benchmark", run_or_exit(action), as_json)


@app.command()
def serve(
    index_dir: Annotated[
        Path | None, typer.Option(help="index directory from `semsearch index`, served as pipeline 'default'")
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option("--pipeline", help="NAME=DIR, repeatable, e.g. --pipeline teacher=ix/t --pipeline small=ix/s"),
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="pipeline the others are compared with (default: teacher if loaded, else first)")
    ] = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    threads: Annotated[int | None, typer.Option(help="onnxruntime / torch intra-op threads per pipeline")] = None,
    workers_threads: Annotated[
        int | None, typer.Option(help="request worker threads (anyio thread pool; default 40)")
    ] = None,
    params: Annotated[str | None, typer.Option(help="search parameters for every pipeline, e.g. nprobe=32")] = None,
    metrics_dataset: Annotated[
        str | None, typer.Option(help="dataset for GET /metrics (default: the one in the indexes' meta.json)")
    ] = None,
    metrics_split: Annotated[str, typer.Option(help="qrels split GET /metrics evaluates on")] = "test",
    metrics_on_startup: Annotated[
        bool, typer.Option("--metrics-on-startup", help="compute GET /metrics at startup instead of on first call")
    ] = False,
) -> None:
    """Serve /search, /search/batch, /compare, /pipelines, /metrics (+ /metrics/prometheus) over HTTP (docs at /docs).

    GET /metrics is computed on its first call and cached, unless --metrics-on-startup computes it while starting.
    """
    import uvicorn

    from indexes.store import read_meta
    from search.serve.app import ServerConfig, create_app
    from search.serve.pipelines import choose_reference, parse_pipeline_specs

    def action() -> ServerConfig:
        config = ServerConfig(
            index_dir=index_dir,
            pipelines=tuple(parse_pipeline_specs(pipeline or [])),
            reference=reference,
            threads=threads,
            workers_threads=workers_threads,
            search_params=parse_params(params),
            metrics_dataset=metrics_dataset,
            metrics_split=metrics_split,
            metrics_on_startup=metrics_on_startup,
        )
        choose_reference([source.name for source in config.sources()], reference)
        for source in config.sources():  # fail fast, before the server starts, on a missing or broken index
            read_meta(source.index_dir)
        return config

    uvicorn.run(create_app(run_or_exit(action)), host=host, port=port)


if __name__ == "__main__":  # pragma: no cover
    app()
