"""`semsearch distill` and `quantize`: make the compressed query encoder (a distilled student, then int8 ONNX).

The distill options default to `DistillConfig()`'s fields, the shipped recipe, so the CLI and the main job agree.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from compression.distill import DistillConfig
from search.cli.base import AsJson, app, print_mapping, run_or_exit, threads_option
from search.cli.choices import Batching, Curriculum, Loss, Precision, Projection, QuantizationMode
from search.jobs.main_job import MainJobSpec
from search.jobs.quantize import QuantizeSpec, run_quantize_job
from semsearch_common.threads import resolve_threads

DEFAULTS = DistillConfig()
QUANTIZE_DEFAULTS = {field.name: field.default for field in fields(QuantizeSpec)}
DISTILL_MAX_TEXTS = MainJobSpec().distill_texts  # what the main job trains each student on
DISTILL_EVAL_TEXTS = 256
DISTILL_PSEUDO_QUERIES = MainJobSpec().pseudo_queries


@app.command()
def distill(
    out: Annotated[Path, typer.Option("--out", help="folder for the distilled sentence-transformers student")],
    dataset: Annotated[str, typer.Option(help="training texts: corpus sentences and TRAIN queries, never test")] = (
        "scifact"
    ),
    student: Annotated[
        str, typer.Option(help="teacher-layers:i,j,..., minilm, minilm-layers:i,j,..., or a sentence-transformers dir")
    ] = (DEFAULTS.student),
    teacher: Annotated[str, typer.Option(help="teacher, minilm or a folder")] = DEFAULTS.teacher,
    loss: Annotated[Loss, typer.Option(help="what the student learns to match (see DistillConfig)")] = DEFAULTS.loss,
    kl_weight: Annotated[float, typer.Option(help="weight of the KL term in mse+kl")] = DEFAULTS.kl_weight,
    temperature: Annotated[float, typer.Option(help="softmax temperature of the KL term")] = DEFAULTS.temperature,
    epochs: Annotated[int, typer.Option(help="passes over the training texts")] = DEFAULTS.epochs,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, linear warmup/decay)")] = (
        DEFAULTS.learning_rate
    ),
    batch_size: Annotated[int, typer.Option(help="texts per step (also the in-batch set of the KL term)")] = (
        DEFAULTS.batch_size
    ),
    max_seq_length: Annotated[int, typer.Option(help="tokens per text, student and teacher")] = (
        DEFAULTS.max_seq_length
    ),
    max_texts: Annotated[int | None, typer.Option(help="cap on training texts (seeded shuffle first)")] = (
        DISTILL_MAX_TEXTS
    ),
    eval_texts: Annotated[int, typer.Option(help="held-out texts for the before/after cosine")] = DISTILL_EVAL_TEXTS,
    seed: Annotated[int, typer.Option(help="seed for the text shuffle and training")] = DEFAULTS.seed,
    projection: Annotated[
        Projection,
        typer.Option(help="auto: project to the teacher's dim (needed for asymmetric search); never: keep own dim"),
    ] = DEFAULTS.projection,
    batching: Annotated[
        Batching, typer.Option(help="random, or neighbours (k-means clustered batches for the KL term)")
    ] = DEFAULTS.batching,
    label_boost: Annotated[
        float, typer.Option(help="rank losses: teacher-logit boost of the documents judged relevant to train queries")
    ] = DEFAULTS.label_boost,
    precision: Annotated[
        Precision, typer.Option(help="autocast of the teacher's targets and the training forward pass")
    ] = DEFAULTS.precision,
    pseudo_queries: Annotated[
        int, typer.Option(help="pseudo-queries cut from the corpus, added to the training texts")
    ] = DISTILL_PSEUDO_QUERIES,
    curriculum: Annotated[
        Curriculum, typer.Option(help="the order of corpus and query-like texts (pseudo and train queries)")
    ] = DEFAULTS.curriculum,
    second_stage_lr: Annotated[
        float, typer.Option(help="a curriculum's second stage trains at this times the learning rate")
    ] = DEFAULTS.second_stage_lr,
    freeze_embeddings: Annotated[
        bool, typer.Option(help="keep the embedding tables as the base model has them (faster, no update)")
    ] = DEFAULTS.freeze_embeddings,
    dropout: Annotated[bool, typer.Option(help="train with the base model's dropout")] = DEFAULTS.dropout,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda or cuda:N")] = "cpu",
    threads: Annotated[int | None, threads_option("torch threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Distil the teacher into a student (MSE and/or in-batch similarity KL); teacher targets are cached."""
    from search.data.datasets import load_dataset
    from search.jobs.distill import distill_on_dataset

    def action() -> dict[str, Any]:
        config = DistillConfig(
            student=student,
            teacher=teacher,
            loss=loss.value,  # type: ignore[arg-type]
            kl_weight=kl_weight,
            temperature=temperature,
            epochs=epochs,
            learning_rate=lr,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            max_texts=None,  # the cap is applied to the dataset's texts below, after the held-out ones
            seed=seed,
            projection=projection.value,  # type: ignore[arg-type]
            batching=batching.value,  # type: ignore[arg-type]
            label_boost=label_boost,
            precision=precision.value,  # type: ignore[arg-type]
            curriculum=curriculum.value,  # type: ignore[arg-type]
            second_stage_lr=second_stage_lr,
            freeze_embeddings=freeze_embeddings,
            dropout=dropout,
        )
        report = distill_on_dataset(load_dataset(dataset), config, out, max_texts, eval_texts, seed, device=device,
                                    threads=resolve_threads(threads), show_progress=True,
                                    pseudo_query_count=pseudo_queries)  # fmt: skip
        return {"out": str(out), **report.to_dict()}

    print_mapping("distillation", run_or_exit(action), as_json)


@app.command()
def quantize(
    model: Annotated[str, typer.Option(help="sentence-transformers folder (a distilled student), minilm or teacher")],
    out: Annotated[Path, typer.Option("--out", help="output folder: fp32/ and int8/ ONNX model folders")],
    mode: Annotated[
        QuantizationMode, typer.Option(help="int8 mode (static: QDQ, calibrated on corpus text)")
    ] = QUANTIZE_DEFAULTS["mode"],
    dataset: Annotated[str, typer.Option(help="calibration corpus and TRAIN queries for the quality gate")] = (
        QUANTIZE_DEFAULTS["dataset"]
    ),
    tolerance: Annotated[float, typer.Option(help="largest allowed nDCG@10 drop of int8 vs fp32")] = (
        QUANTIZE_DEFAULTS["tolerance"]
    ),
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 when the gate fails (default: warn)")] = False,
    gate_docs: Annotated[int, typer.Option(help="distractor documents in the gate's corpus subset")] = (
        QUANTIZE_DEFAULTS["gate_docs"]
    ),
    calibration_texts: Annotated[int, typer.Option(help="corpus passages for static calibration")] = (
        QUANTIZE_DEFAULTS["calibration_texts"]
    ),
    threads: Annotated[int | None, threads_option("onnxruntime intra-op threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Export to ONNX (fp32), quantize to int8, and print size, latency and the train-split quality gate."""

    def action() -> dict[str, Any]:
        spec = QuantizeSpec(model=model, out=out, mode=mode.value, dataset=dataset, tolerance=tolerance,
                            gate_docs=gate_docs, calibration_texts=calibration_texts,
                            threads=resolve_threads(threads))  # fmt: skip
        return run_quantize_job(spec)

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


@app.command(name="prune-vocab")
def prune_vocab(
    model: Annotated[Path, typer.Option(help="an exported ONNX folder (fp32/ or int8-*/ of `semsearch quantize`)")],
    out: Annotated[Path, typer.Option("--out", help="the pruned ONNX folder")],
    dataset: Annotated[str, typer.Option(help="keep the tokens of this corpus and its TRAIN queries (never test)")] = (
        "scifact"
    ),
    max_tokens: Annotated[
        int | None, typer.Option(help="keep only the N most frequent of them (smaller file; the rest read as [UNK])")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Prune the token-embedding table to the tokens a corpus produces (the tokenizer is unchanged)."""
    from search.data.datasets import load_dataset
    from search.jobs.quantize import prune_for_dataset

    result = run_or_exit(lambda: prune_for_dataset(model, load_dataset(dataset), out, max_tokens))
    print_mapping("vocabulary pruning", result, as_json)
