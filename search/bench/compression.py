"""`semsearch bench-compression`: teacher, off-the-shelf MiniLM and the distilled student (fp32, int8, and int8
queries over teacher documents) on one dataset, in one run, so the ratios between them are fair.

Every pipeline is a Flat index (exact search), so the figures isolate the encoders; ANN indexes are the job of
`semsearch bench`. Corpus throughput is timed on the same seeded sample of documents for every encoder.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders import Encoder, load_encoder
from indexes.faiss_index import IndexSpec
from indexes.store import load_index_dir
from search.data.datasets import load_dataset
from search.evaluation.evaluate import evaluate, exact_top_ids
from search.pipeline import Pipeline, build_index_dir
from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.machine import machine_info
from semsearch_common.tables import markdown_table
from semsearch_common.threads import available_cores
from semsearch_common.timing import time_pass

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
THROUGHPUT_WARMUP = 8


@dataclass(frozen=True)
class CompressionBenchSpec:
    """Which encoders to compare (specs as `load_encoder` takes them) and how to measure them (`threads`: torch and
    onnxruntime threads, default every core this process may use)."""

    student: str
    student_int8: str
    dataset: str = "scifact"
    split: str = "test"
    teacher: str = "teacher"
    minilm: str = "minilm"
    threads: int = field(default_factory=available_cores)
    throughput_docs: int = 128
    seed: int = 0
    doc_tower: str | None = None  # the base student's int8 encoder, for a student distilled against its documents


def docs_per_second(encoder: Encoder, texts: list[str]) -> float:
    """Passages per second on `texts` (one pass), after a warm-up on the first `THROUGHPUT_WARMUP` of them."""
    seconds = time_pass(
        lambda: encoder.encode(texts, kind="passage"),
        warmup=lambda: encoder.encode(texts[:THROUGHPUT_WARMUP], kind="passage"),
    )
    return len(texts) / seconds


def run_compression_bench(spec: CompressionBenchSpec, out_dir: Path, show_progress: bool = True) -> dict[str, Any]:
    """Build the five Flat pipelines, evaluate them against qrels and the teacher, and write summary.json/md."""
    dataset = load_dataset(spec.dataset)
    encoders = {
        "teacher": load_encoder(spec.teacher, threads=spec.threads),
        "minilm": load_encoder(spec.minilm, threads=spec.threads),
        "student_fp32": load_encoder(spec.student, threads=spec.threads),
        "student_int8": load_encoder(spec.student_int8, threads=spec.threads),
    }
    if spec.doc_tower:
        encoders["doc_tower"] = load_encoder(spec.doc_tower, threads=spec.threads)
    layouts = {  # pipeline -> (query encoder, document encoder)
        "teacher": ("teacher", "teacher"),
        "minilm": ("minilm", "minilm"),
        "student_fp32": ("student_fp32", "student_fp32"),
        "student_int8": ("student_int8", "student_int8"),
        "asymmetric_int8": ("student_int8", "teacher"),
    }
    if spec.doc_tower:  # student queries over the frozen base student's documents (see search.jobs.distill)
        layouts["tower_int8"] = ("student_int8", "doc_tower")
        layouts["doc_tower_int8"] = ("doc_tower", "doc_tower")
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="semsearch-bench-") as tmp:
        pipelines = {}
        for name, (query_name, doc_name) in layouts.items():
            query_encoder, doc_encoder = encoders[query_name], encoders[doc_name]
            if query_encoder.dim != doc_encoder.dim:
                logger.warning("skipping %s: %d-d queries cannot search %d-d documents", name, query_encoder.dim,
                               doc_encoder.dim)  # fmt: skip
                continue
            build_index_dir(dataset, query_encoder, IndexSpec("Flat"), Path(tmp) / name,
                            show_progress=show_progress, doc_encoder=doc_encoder)  # fmt: skip
            pipelines[name] = Pipeline(query_encoder, load_index_dir(Path(tmp) / name))
        teacher = pipelines["teacher"]
        _, query_texts, _ = dataset.split_queries(spec.split)
        teacher_top_ids = exact_top_ids(teacher, dataset, query_texts, 10, show_progress)  # once, not once per pipeline
        for name, pipeline in pipelines.items():
            logger.info("evaluating %s", name)
            reports[name] = evaluate(pipeline, dataset, spec.split, reference=teacher, show_progress=show_progress,
                                     reference_top_ids=teacher_top_ids)  # fmt: skip
    rng = np.random.default_rng(spec.seed)
    sample = rng.choice(len(dataset.corpus), size=min(spec.throughput_docs, len(dataset.corpus)), replace=False)
    texts = [dataset.corpus[i].full_text() for i in sorted(sample)]
    throughput = {name: docs_per_second(encoders[name], texts) for name in ("teacher", "student_int8")}
    summary = summarise(spec, reports, throughput, encoders)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    write_json_atomic(out_dir / "pipelines.json", reports)
    write_text_atomic(out_dir / "summary.md", summary_markdown(summary, reports))
    return summary


def summarise(
    spec: CompressionBenchSpec,
    reports: dict[str, dict[str, Any]],
    throughput: dict[str, float],
    encoders: dict[str, Encoder],
) -> dict[str, Any]:
    """summary.json: each pipeline's headline figures, model sizes, throughput, the student's identity, machine."""

    def get(name: str, key: str) -> Any:
        return reports.get(name, {}).get(key)

    student_identity = encoders["student_fp32"].identity()
    config_path = Path(student_identity.get("path", "")) / "distill_config.json"
    return {
        "dataset": spec.dataset,
        "split": spec.split,
        "teacher_ndcg@10": get("teacher", "ndcg@10"),
        "minilm_ndcg@10": get("minilm", "ndcg@10"),
        "student_fp32_ndcg@10": get("student_fp32", "ndcg@10"),
        "student_int8_ndcg@10": get("student_int8", "ndcg@10"),
        "asymmetric_int8_ndcg@10": get("asymmetric_int8", "ndcg@10"),
        "tower_int8_ndcg@10": get("tower_int8", "ndcg@10"),
        "doc_tower_int8_ndcg@10": get("doc_tower_int8", "ndcg@10"),
        "minilm_recall@10_vs_teacher": get("minilm", "recall@10_vs_teacher"),
        "student_fp32_recall@10_vs_teacher": get("student_fp32", "recall@10_vs_teacher"),
        "student_int8_recall@10_vs_teacher": get("student_int8", "recall@10_vs_teacher"),
        "asymmetric_int8_recall@10_vs_teacher": get("asymmetric_int8", "recall@10_vs_teacher"),
        "tower_int8_recall@10_vs_teacher": get("tower_int8", "recall@10_vs_teacher"),
        "doc_tower_int8_recall@10_vs_teacher": get("doc_tower_int8", "recall@10_vs_teacher"),
        "teacher_encode_ms_p50": get("teacher", "encode_ms_p50"),
        "minilm_encode_ms_p50": get("minilm", "encode_ms_p50"),
        "student_int8_encode_ms_p50": get("student_int8", "encode_ms_p50"),
        "teacher_model_bytes": encoders["teacher"].model_bytes(),
        "student_int8_model_bytes": encoders["student_int8"].model_bytes(),
        "teacher_docs_per_s": throughput["teacher"],
        "student_int8_docs_per_s": throughput["student_int8"],
        "throughput_docs": spec.throughput_docs,
        "student": {
            "fp32": student_identity,
            "int8": encoders["student_int8"].identity(),
            "distill_config": json.loads(config_path.read_text()) if config_path.exists() else None,
        },
        "spec": asdict(spec),
        "machine": machine_info(spec.threads),
    }


PIPELINE_HEADERS = ("pipeline", "nDCG@10", "recall@10 vs teacher", "encode ms p50", "vs teacher", "model MB")


def pipeline_cells(name: str, report: dict[str, Any], teacher_ms: float) -> list[str]:
    """One summary.md line: nDCG to 4 decimals, recall to 3, the encode-speed ratio to the teacher, model MB."""
    ratio = teacher_ms / report["encode_ms_p50"] if report["encode_ms_p50"] else float("nan")
    return [
        name, f"{report['ndcg@10']:.4f}", f"{report.get('recall@10_vs_teacher', float('nan')):.3f}",
        f"{report['encode_ms_p50']:.2f}", f"{ratio:.1f}x faster", f"{report['model_bytes'] / 1e6:.1f}",
    ]  # fmt: skip


def summary_markdown(summary: dict[str, Any], reports: dict[str, dict[str, Any]]) -> str:
    """summary.md: one line per pipeline and the corpus throughput of the teacher and the int8 student."""
    teacher_ms = summary["teacher_encode_ms_p50"]
    rows = [pipeline_cells(name, report, teacher_ms) for name, report in reports.items()]
    lines = [
        f"# Compression on {summary['dataset']} ({summary['split']} split), one run",
        "",
        f"Machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores, "
        f"{summary['machine']['threads']} threads. Flat (exact) indexes; latency is one query at a time.",
        "",
        markdown_table(PIPELINE_HEADERS, rows).rstrip("\n"),
        "",
        f"Corpus throughput on {summary['throughput_docs']} sampled documents: teacher "
        f"{summary['teacher_docs_per_s']:.1f} docs/s, int8 student {summary['student_int8_docs_per_s']:.1f} docs/s "
        f"({summary['student_int8_docs_per_s'] / summary['teacher_docs_per_s']:.1f}x).",
        "",
    ]
    return "\n".join(lines)
