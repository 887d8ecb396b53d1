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
    from search.datasets import load_dataset
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
    from search.datasets import load_dataset
    from search.evaluate import evaluate
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
    loss: Annotated[str, typer.Option(help="mse, kl or mse+kl")] = "mse+kl",
    kl_weight: Annotated[float, typer.Option(help="weight of the KL term in mse+kl")] = 1.0,
    temperature: Annotated[float, typer.Option(help="softmax temperature of the KL term")] = 0.05,
    epochs: Annotated[int, typer.Option(help="passes over the training texts")] = 1,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, linear warmup/decay)")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="texts per step (also the in-batch set of the KL term)")] = 32,
    max_seq_length: Annotated[int, typer.Option(help="tokens per text, student and teacher")] = 128,
    max_texts: Annotated[int | None, typer.Option(help="cap on training texts (seeded shuffle first)")] = 20_000,
    eval_texts: Annotated[int, typer.Option(help="held-out texts for the before/after cosine")] = 256,
    seed: Annotated[int, typer.Option(help="seed for the text shuffle and training")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Distil the teacher into a student (MSE and/or in-batch similarity KL); teacher targets are cached."""
    from compression.distill import DistillConfig
    from compression.distill import distill as run_distillation
    from search.datasets import load_dataset
    from search.distill_data import training_texts

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
        )
        wanted = None if max_texts is None else max_texts + eval_texts
        texts = training_texts(load_dataset(dataset), max_texts=wanted, seed=seed)
        held_out, train = texts[:eval_texts], texts[eval_texts:]
        report = run_distillation(
            train, out, config, eval_texts=held_out, device=device, threads=threads, show_progress=not as_json
        )
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

    from compression.models import model_bytes, resolve_model
    from compression.onnx_encoder import ONNX_MODEL_FILE, OnnxEncoder
    from compression.onnx_export import export_onnx
    from compression.quantize import QUANTIZATION_MODES, quantize_onnx
    from search.datasets import load_dataset
    from search.evaluate import encode_latency_ms
    from search.quantize_gate import quality_gate

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
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Teacher vs MiniLM vs distilled student (fp32, int8, asymmetric int8), side by side, in one run."""
    from search.compression_bench import CompressionBenchSpec, run_compression_bench

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
        )
        summary = run_compression_bench(spec, out, show_progress=not as_json)
        return {key: value for key, value in summary.items() if not isinstance(value, dict)}

    print_mapping("compression benchmark", run_or_exit(action), as_json)


@app.command()
def serve(
    index_dir: Annotated[Path, typer.Option(help="index directory from `semsearch index`")],
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    threads: Annotated[int | None, typer.Option(help="torch threads")] = None,
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
) -> None:
    """Serve POST /search and GET /health over HTTP (OpenAPI at /docs)."""
    import uvicorn

    from indexes.store import read_meta
    from search.api import ServerConfig, create_app

    def action() -> ServerConfig:
        read_meta(index_dir)  # fail fast, before the server starts, on a missing or broken index
        return ServerConfig(index_dir=index_dir, threads=threads, search_params=parse_params(params))

    uvicorn.run(create_app(run_or_exit(action)), host=host, port=port)


if __name__ == "__main__":  # pragma: no cover
    app()
