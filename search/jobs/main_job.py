"""`semsearch run`: the main job, end to end, in one command.

Index the dataset with the teacher, build the compressed pipeline (distil the student, export it to ONNX, quantize
it to int8, index the corpus into a compressed FAISS index), evaluate every pipeline on the test split and print
them side by side: nDCG@10, recall@10 against the teacher's exact top-10, latency, model and index size.

Every expensive artefact is cached under `cache_root()` and keyed by content, so a second run takes seconds: corpus
embeddings (`search.embeddings`), teacher targets (`compression.distill`), and the student and its ONNX exports
(`students/<key>`, keyed by the distillation config, the training texts and the teacher's identity).

`--quick` runs the same steps on a labelled subset (the judged documents of the split plus seeded distractors) with
a short distillation, so a cold run fits in minutes; its figures are not comparable with full-corpus ones, and the
output says so on every line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from common.cache import cache_key, cache_root, location_free
from compression.distill import DistillConfig, parse_student, texts_fingerprint
from compression.encoders import Encoder, load_encoder
from compression.encoders.onnx import OnnxEncoder
from compression.models import model_fingerprint, resolve_model
from compression.onnx_export import export_onnx
from compression.quantize import QUANTIZATION_MODES, quantize_onnx
from indexes.faiss_index import IndexSpec, validate_factory
from indexes.store import load_index_dir
from search.data.datasets import Dataset, corpus_fingerprint, load_dataset
from search.data.training_texts import training_texts
from search.evaluation.evaluate import evaluate, exact_top_ids
from search.evaluation.quantize_gate import gate_subset
from search.jobs.distill import distill_on_dataset
from search.pipeline import Pipeline, build_index_dir

logger = logging.getLogger(__name__)

STUDENTS_DIR = "students"
SUBSET_LABEL = "SUBSET"
STUDENT_KEY_LENGTH = 24


@dataclass(frozen=True)
class MainJobSpec:
    """What the main job builds and measures.

    recipe: the distillation; its defaults are the shipped recipe (benchmarks/compression/README.md gives the
        measured alternatives and why this one won).
    distill_texts: training texts for the student (corpus sentences and windows, train queries; never test queries).
    compressed_index: the FAISS factory of the compressed pipelines (the teacher's is `teacher_index`).
    quick: run on a subset (judged documents of `split` + `quick_distractors` seeded others) with
        `quick_distill_texts` training texts; labelled as a subset in every output.
    """

    dataset: str = "scifact"
    split: str = "test"
    recipe: DistillConfig = field(default_factory=DistillConfig)  # the shipped recipe: DistillConfig's defaults
    distill_texts: int = 8_000
    eval_texts: int = 256
    teacher_index: str = "Flat"
    compressed_index: str = "SQ8"
    quantization: str = "dynamic"
    threads: int = 2
    runs_dir: Path = Path("runs")
    quick: bool = False
    quick_distractors: int = 200
    quick_distill_texts: int = 1_000
    quick_compressed_index: str = "SQ8"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(f"unknown quantization {self.quantization!r}: use one of {', '.join(QUANTIZATION_MODES)}")
        for name in ("distill_texts", "quick_distill_texts", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_texts < 0 or self.quick_distractors < 0:
            raise ValueError("eval_texts and quick_distractors must be >= 0")

    @property
    def texts_for_training(self) -> int:
        return self.quick_distill_texts if self.quick else self.distill_texts

    @property
    def compressed_factory(self) -> str:
        return self.quick_compressed_index if self.quick else self.compressed_index


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline's side-by-side figures."""

    name: str
    query_encoder: str
    doc_encoder: str
    index: str
    report: dict[str, Any]


@dataclass(frozen=True)
class MainJobResult:
    dataset: str
    subset: bool
    documents: int
    queries: int
    student_dir: Path
    int8_dir: Path
    student_from_cache: bool
    rows: list[PipelineRow]
    doc_int8_dir: Path | None = None  # the int8 base student encoding documents, for a document-tower student

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["student_dir"], data["int8_dir"] = str(self.student_dir), str(self.int8_dir)
        data["doc_int8_dir"] = str(self.doc_int8_dir) if self.doc_int8_dir else None
        return data


def main_job_spec(
    compressed_index: str | None = None, distill_texts: int | None = None, **settings: Any
) -> MainJobSpec:
    """A `MainJobSpec` where `compressed_index` and `distill_texts`, when given, apply to full and quick runs alike
    (what `semsearch run --compressed-index/--distill-texts` mean)."""
    spec = MainJobSpec(**settings)
    if compressed_index is not None:
        spec = replace(spec, compressed_index=compressed_index, quick_compressed_index=compressed_index)
    if distill_texts is not None:
        spec = replace(spec, distill_texts=distill_texts, quick_distill_texts=distill_texts)
    return spec


def quick_subset(dataset: Dataset, split: str, distractors: int, seed: int) -> Dataset:
    """The judged documents of `split` plus `distractors` seeded others, as a dataset named `<name>-subset`.

    Queries and qrels are kept (every judged document of `split` is in the subset, so its metrics are well defined,
    though higher than on the full corpus: fewer distractors).
    """
    docs = gate_subset(dataset, split, distractors, seed)
    return replace(dataset, name=f"{dataset.name}-subset", corpus=docs)


def student_key(config: DistillConfig, data: dict[str, str], teacher_identity: dict[str, Any]) -> str:
    """Cache key of a distilled student: the recipe, the data (texts and corpus hashes) and the teacher (not its
    location)."""
    payload = {"config": config.to_dict(), "data": data, "teacher": location_free(teacher_identity)}
    return cache_key(payload, length=STUDENT_KEY_LENGTH)


def ensure_student(dataset: Dataset, spec: MainJobSpec, teacher: Encoder, show_progress: bool) -> tuple[Path, bool]:
    """The distilled student folder for `spec.recipe` on `dataset`'s training texts: from the cache, else trained."""
    texts = training_texts(dataset, max_texts=spec.texts_for_training + spec.eval_texts, seed=spec.seed)
    config = replace(spec.recipe, seed=spec.seed)
    key_payload = {"dataset": corpus_fingerprint(dataset.corpus), "texts": texts_fingerprint(texts)}
    out = cache_root() / STUDENTS_DIR / student_key(config, key_payload, teacher.identity())
    if (out / "distill_report.json").exists():
        logger.info("reusing the distilled student %s", out)
        return out, True
    logger.info("distilling %s on %d texts into %s", config.student, len(texts) - spec.eval_texts, out)
    distill_on_dataset(dataset, config, out, spec.texts_for_training, spec.eval_texts, spec.seed, teacher=teacher,
                       threads=spec.threads, show_progress=show_progress)  # fmt: skip
    return out, False


def ensure_int8(model_dir: Path, onnx_dir: Path, mode: str, calibration: list[str]) -> Path:
    """fp32 ONNX export and int8 quantization of `model_dir` into `onnx_dir` (cached); return the int8 folder."""
    fp32_dir, int8_dir = onnx_dir / "fp32", onnx_dir / f"int8-{mode}"
    if not (fp32_dir / "onnx_config.json").exists():
        export_onnx(model_dir, fp32_dir)
    if not (int8_dir / "onnx_config.json").exists():
        quantize_onnx(fp32_dir, int8_dir, mode=mode, calibration_texts=calibration if mode == "static" else None)  # type: ignore[arg-type]
    return int8_dir


def uses_document_tower(recipe: DistillConfig) -> bool:
    """Whether the student was trained to rank the base student's own (frozen) corpus vectors: its index must then
    be built with the base student as document encoder (see `search.jobs.distill.ranking_documents`)."""
    return "rank" in recipe.loss and recipe.projection == "never"


def base_student_int8(recipe: DistillConfig, mode: str, calibration: list[str]) -> Path:
    """int8 ONNX of the student's starting point (e.g. all-MiniLM-L6-v2), cached by its content fingerprint."""
    kind, argument = parse_student(recipe.student)
    if kind == "teacher-layers":
        raise ValueError("a teacher-layers student has no separate document tower")
    base = resolve_model(str(argument)).path
    return ensure_int8(base, cache_root() / STUDENTS_DIR / f"base-{model_fingerprint(base)[:16]}-onnx", mode,
                       calibration)  # fmt: skip


def run_main_job(spec: MainJobSpec, show_progress: bool = True) -> MainJobResult:
    """Teacher pipeline and compressed pipeline(s), evaluated on `spec.split` against qrels and the teacher's exact
    top-10.

    The compressed pipeline's queries are encoded by the int8 student; its documents by the int8 student too
    (symmetric), or, for a student distilled against a frozen document tower, by the int8 base student. A student in
    the teacher's space also gets the asymmetric pipeline (teacher documents, student queries).
    """
    dataset = load_dataset(spec.dataset)
    if spec.quick:
        dataset = quick_subset(dataset, spec.split, spec.quick_distractors, spec.seed)
    _, query_texts, _ = dataset.split_queries(spec.split)  # fail early on a dataset without qrels
    teacher = load_encoder(spec.recipe.teacher, threads=spec.threads)
    validate_factory(spec.teacher_index, teacher.dim)
    validate_factory(spec.compressed_factory, teacher.dim)  # fail on a bad factory before the distillation
    student_dir, from_cache = ensure_student(dataset, spec, teacher, show_progress)
    calibration = [doc.full_text() for doc in dataset.corpus[:256]]
    int8_dir = ensure_int8(student_dir, student_dir.parent / f"{student_dir.name}-onnx", spec.quantization,
                           calibration)  # fmt: skip
    student: Encoder = OnnxEncoder(int8_dir, name=f"student-{spec.quantization}-int8", threads=spec.threads)
    documents: Encoder = student
    base_dir: Path | None = None
    if uses_document_tower(spec.recipe):
        base_name = Path(str(parse_student(spec.recipe.student)[1])).name
        base_dir = base_student_int8(spec.recipe, spec.quantization, calibration)
        documents = OnnxEncoder(base_dir, name=f"{base_name}-int8", threads=spec.threads)
    layouts: list[tuple[str, Encoder, Encoder, str]] = [
        ("teacher", teacher, teacher, spec.teacher_index),
        ("compressed", student, documents, spec.compressed_factory),
    ]
    if student.dim == teacher.dim:
        layouts.append(("compressed-asymmetric", student, teacher, spec.compressed_factory))
    root = spec.runs_dir / dataset.name
    pipelines: dict[str, Pipeline] = {}
    for name, query_encoder, doc_encoder, factory in layouts:
        out = root / name
        build_index_dir(dataset, query_encoder, IndexSpec(factory, seed=spec.seed), out,
                        show_progress=show_progress, doc_encoder=doc_encoder)  # fmt: skip
        pipelines[name] = Pipeline(query_encoder, load_index_dir(out))
    reference = pipelines["teacher"]
    teacher_top = exact_top_ids(reference, dataset, query_texts, 10, show_progress)
    rows = []
    for (name, query_encoder, doc_encoder, factory), pipeline in zip(layouts, pipelines.values(), strict=True):
        report = evaluate(pipeline, dataset, spec.split, reference=reference, show_progress=show_progress,
                          reference_top_ids=teacher_top)  # fmt: skip
        report["model_bytes"] = query_encoder.model_bytes()
        rows.append(PipelineRow(name, query_encoder.name, doc_encoder.name, factory, report))
    return MainJobResult(
        dataset=dataset.name,
        subset=spec.quick,
        documents=len(dataset.corpus),
        queries=len(query_texts),
        student_dir=student_dir,
        int8_dir=int8_dir,
        student_from_cache=from_cache,
        rows=rows,
        doc_int8_dir=base_dir,
    )


def side_by_side(result: MainJobResult) -> str:
    """The comparison as a plain-text table, ratios against the teacher's row."""
    teacher = result.rows[0].report
    label = (
        f" [{SUBSET_LABEL}: {result.documents} docs, not comparable with full-corpus figures]" if result.subset else ""
    )
    header = (
        f"{result.dataset}{label}: {result.queries} test queries, one at a time\n"
        f"{'pipeline':<22} {'nDCG@10':>8} {'R@10 vs teacher':>16} {'encode ms':>10} {'total ms':>9} "
        f"{'speed-up':>9} {'model MB':>9} {'B/vector':>9}"
    )
    lines = [header]
    for row in result.rows:
        r = row.report
        speed_up = teacher["total_ms_p50"] / r["total_ms_p50"] if r["total_ms_p50"] else float("nan")
        lines.append(
            f"{row.name:<22} {r['ndcg@10']:>8.4f} {r.get('recall@10_vs_teacher', float('nan')):>16.3f} "
            f"{r['encode_ms_p50']:>10.2f} {r['total_ms_p50']:>9.2f} {speed_up:>8.1f}x "
            f"{r['model_bytes'] / 1e6:>9.1f} {r['bytes_per_vector']:>9.1f}"
        )
    lines.append(f"latency: p50 per query; encoders: {', '.join(f'{r.name}={r.query_encoder}' for r in result.rows)}")
    return "\n".join(lines)
