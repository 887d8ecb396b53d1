"""`semsearch run`: the main job, end to end, in one command.

1. Index the dataset with the teacher (its corpus vectors are cached: the one slow step of a cold run).
2. Distil every candidate student into the teacher's space on the dataset's training texts (corpus sentences and
   windows, train queries, pseudo-queries cut from the corpus; never test queries), export each to ONNX and
   quantize it to int8 (or, for the static encoder, store its table in int8). See `search.jobs.students`.
3. Pick the one to ship on a held-out slice of the training texts: the best recall@10 against the teacher among the
   students whose single-query encode p50 is within the budget (default: 1/15 of the teacher's, measured in the same
   run on the same texts). `search.selection.budget_pick` says which and why.
4. Search the teacher's document vectors with each student's queries (asymmetric; the shipped one is `compressed`,
   in the compressed index), plus the naive int8 MiniLM on its own documents as the reference a user gets in ten
   lines, and evaluate every pipeline on the test split: nDCG@10, recall@10 against the teacher's exact top-10,
   latency, model and index size, side by side.

Every expensive artefact is cached under `cache_root()` and keyed by content, so a second run takes seconds.
`--quick` runs the same steps on a labelled subset (the judged documents of the split plus seeded distractors) with
fewer training texts, so a cold run fits in minutes; its figures are not comparable with full-corpus ones, and the
output says so on every line. `--large` is the bigger training recipe (every training text, more epochs).
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from compression.distill import DistillConfig, compute_teacher_targets
from compression.encoders import Encoder, load_encoder
from compression.encoders.onnx import OnnxEncoder
from compression.precision import DEFAULT_ENCODE_PRECISION, PRECISION_NAMES
from compression.quantize import QUANTIZATION_MODES
from compression.static import StaticConfig
from indexes.choice import ChoiceRule, choose_index
from indexes.faiss_index import IndexSpec, validate_factory
from indexes.store import load_index_dir
from search.data.datasets import Dataset, load_dataset
from search.data.pseudo_queries import PseudoQueryMix, pseudo_queries
from search.data.training_texts import training_texts
from search.embeddings import encode_corpus
from search.evaluation.agreement import agreement, encode_p50_ms, query_like, top_k_rows
from search.evaluation.evaluate import evaluate, exact_top_ids
from search.evaluation.quantize_gate import AGREEMENT_TOLERANCE, AgreementGate, agreement_gate, gate_subset
from search.jobs.students import (
    STATIC_STUDENT,
    BuiltStudent,
    TrainingData,
    base_model_int8,
    ensure_static_student,
    ensure_transformer_student,
    validate_student_spec,
)
from search.pipeline import Pipeline, build_index_dir
from search.selection import budget_pick
from semsearch_common.threads import available_cores

logger = logging.getLogger(__name__)

SUBSET_LABEL = "SUBSET"
# the compressed pipelines' index: "auto" chooses it per corpus by `indexes.choice`'s rule (the smallest in-memory
# codes whose recall@10 vs exact search, rescored from the vector file, reaches 0.99 on held-out query-like texts);
# a factory string fixes it instead
AUTO_INDEX = "auto"
COMPRESSED_INDEX = AUTO_INDEX
SQ8_ROW = "compressed over SQ8 (no rescoring)"  # the same encoder over plain SQ8 codes: what the choice must match
DEFAULT_STUDENTS = ("teacher-layers:0,11", "minilm", STATIC_STUDENT)
VALIDATION_METRIC = "val_recall@10_vs_teacher"
TEACHER_MAX_LENGTH = 512  # validation texts are encoded by the teacher at its own length (capped by its model)


@dataclass(frozen=True)
class MainJobSpec:
    """What the main job builds and measures.

    students: the candidate query encoders (see `search.jobs.students`); the first is the one to beat.
    recipe / static_recipe: how transformer students and the static one are trained; their defaults are the
        shipped recipes (benchmarks/students/README.md gives the measured alternatives).
    distill_texts: corpus training texts (sentences and windows, train queries; never test queries);
        `large` uses every one of them, `large_pseudo_queries` and `large_epochs` instead.
    pseudo_queries: short query-like texts cut from the corpus (`search.data.pseudo_queries`) added to the
        training texts, in the proportions of `pseudo_mix`; the teacher labels them like every other text.
    validation_texts / pseudo_validation: corpus texts and pseudo-queries held out from training; the pick uses
        the query-like ones among them (`query_like`).
    latency_texts: how many of them time the single-query encode of the teacher and each student, interleaved.
    budget_ratio: a student qualifies when its encode p50 <= the teacher's / budget_ratio.
    reference: the off-the-shelf model shown as the naive int8 symmetric row (None: no such row).
    teacher_precision: the teacher's corpus pass and queries on torch: `auto` (bf16 where the CPU computes it
        natively, else fp32), `fp32` or `bf16` (see `compression.precision`).
    threads: torch and onnxruntime threads (default: every core this process may use, `available_cores`).
    quick: run on a subset (judged documents of `split` + `quick_distractors` seeded others) with
        `quick_distill_texts` training texts; labelled as a subset in every output.
    int8_tolerance: the most recall@10 vs teacher a student's int8 model may lose against its fp32 model on the
        held-out texts (`agreement_gate`); a student whose int8 fails ships fp32.
    """

    dataset: str = "scifact"
    split: str = "test"
    students: tuple[str, ...] = DEFAULT_STUDENTS
    recipe: DistillConfig = field(default_factory=DistillConfig)
    static_recipe: StaticConfig = field(default_factory=StaticConfig)
    distill_texts: int = 8_000
    pseudo_queries: int = 32_000
    pseudo_mix: PseudoQueryMix = field(default_factory=PseudoQueryMix)
    large: bool = False
    large_epochs: int = 3
    large_pseudo_queries: int = 200_000
    validation_texts: int = 512
    pseudo_validation: int = 1_000
    latency_texts: int = 128
    budget_ratio: float = 15.0
    reference: str | None = "minilm"
    teacher_index: str = "Flat"
    teacher_precision: str = DEFAULT_ENCODE_PRECISION
    compressed_index: str = COMPRESSED_INDEX
    quantization: str = "dynamic"
    threads: int = field(default_factory=available_cores)
    int8_tolerance: float = AGREEMENT_TOLERANCE
    runs_dir: Path = Path("runs")
    quick: bool = False
    quick_distractors: int = 200
    quick_distill_texts: int = 2_000
    quick_pseudo_queries: int = 4_000
    quick_compressed_index: str = COMPRESSED_INDEX
    seed: int = 0

    def __post_init__(self) -> None:
        if self.teacher_precision not in PRECISION_NAMES:
            raise ValueError(
                f"unknown teacher_precision {self.teacher_precision!r}: use one of {', '.join(PRECISION_NAMES)}"
            )
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(f"unknown quantization {self.quantization!r}: use one of {', '.join(QUANTIZATION_MODES)}")
        for name in ("distill_texts", "quick_distill_texts", "threads", "large_epochs", "latency_texts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.validation_texts < 2 or self.quick_distractors < 0:
            raise ValueError("validation_texts must be >= 2 and quick_distractors >= 0")
        for name in ("pseudo_queries", "quick_pseudo_queries", "large_pseudo_queries", "pseudo_validation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.budget_ratio > 0:
            raise ValueError(f"budget_ratio must be > 0, got {self.budget_ratio}")
        if not self.int8_tolerance >= 0:
            raise ValueError(f"int8_tolerance must be >= 0, got {self.int8_tolerance}")
        if not self.students:
            raise ValueError(f"give at least one student, e.g. {', '.join(DEFAULT_STUDENTS)}")
        for student in self.students:
            validate_student_spec(student)

    @property
    def texts_for_training(self) -> int | None:
        if self.large:
            return None
        return self.quick_distill_texts if self.quick else self.distill_texts

    @property
    def pseudo_queries_for_training(self) -> int:
        if self.large:
            return self.large_pseudo_queries
        return self.quick_pseudo_queries if self.quick else self.pseudo_queries

    @property
    def compressed_factory(self) -> str:
        return self.quick_compressed_index if self.quick else self.compressed_index

    @property
    def training_recipe(self) -> DistillConfig:
        return replace(self.recipe, epochs=self.large_epochs) if self.large else self.recipe

    @property
    def static_training_recipe(self) -> StaticConfig:
        return replace(self.static_recipe, epochs=max(self.static_recipe.epochs, self.large_epochs)) if self.large \
            else self.static_recipe  # fmt: skip


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
    rows: list[PipelineRow]
    selection: list[dict[str, Any]]  # validation figures of every candidate (held-out texts, never test queries)
    picked: str
    reason: str
    students: dict[str, dict[str, Any]]  # spec -> folders, the precision shipped (int8 unless its gate failed), cache
    training_texts: int = 0
    index_choice: dict[str, Any] | None = None  # how the compressed index was chosen (None: given by the user)

    @property
    def int8_dir(self) -> Path:
        return Path(self.students[self.picked]["int8_dir"])

    @property
    def shipped_dir(self) -> Path:
        """The compressed pipeline's query model: the picked student's int8 folder, or its fp32 one when int8 failed
        the gate."""
        return Path(self.students[self.picked]["shipped_dir"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def main_job_spec(
    compressed_index: str | None = None,
    distill_texts: int | None = None,
    pseudo_queries: int | None = None,
    **settings: Any,
) -> MainJobSpec:
    """A `MainJobSpec` where `compressed_index`, `distill_texts` and `pseudo_queries`, when given, apply to full,
    quick and large runs alike (what `semsearch run --compressed-index/--distill-texts/--pseudo-queries` mean)."""
    spec = MainJobSpec(**settings)
    if compressed_index is not None:
        spec = replace(spec, compressed_index=compressed_index, quick_compressed_index=compressed_index)
    if distill_texts is not None:
        spec = replace(spec, distill_texts=distill_texts, quick_distill_texts=distill_texts)
    if pseudo_queries is not None:
        spec = replace(spec, pseudo_queries=pseudo_queries, quick_pseudo_queries=pseudo_queries,
                       large_pseudo_queries=pseudo_queries)  # fmt: skip
    return spec


def quick_subset(dataset: Dataset, split: str, distractors: int, seed: int) -> Dataset:
    """The judged documents of `split` plus `distractors` seeded others, as a dataset named `<name>-subset`.

    Queries and qrels are kept (every judged document of `split` is in the subset, so its metrics are well defined,
    though higher than on the full corpus: fewer distractors).
    """
    docs = gate_subset(dataset, split, distractors, seed)
    return replace(dataset, name=f"{dataset.name}-subset", corpus=docs)


def split_training_texts(dataset: Dataset, spec: MainJobSpec) -> TrainingData:
    """The seeded training texts: corpus texts (the first `validation_texts` held out, then up to
    `texts_for_training`) and pseudo-queries (the first `pseudo_validation` held out, then up to
    `pseudo_queries_for_training`), the training ones shuffled together. No pseudo-query repeats a corpus text."""
    wanted = spec.texts_for_training
    texts = training_texts(dataset, max_texts=None if wanted is None else wanted + spec.validation_texts,
                           seed=spec.seed)  # fmt: skip
    if len(texts) < spec.validation_texts + 2:
        raise ValueError(
            f"{dataset.name!r} gives only {len(texts)} training texts: need more than validation_texts="
            f"{spec.validation_texts} (a corpus with more sentences, or a smaller --validation-texts)"
        )
    train, held_out = texts[spec.validation_texts :], texts[: spec.validation_texts]
    count = spec.pseudo_queries_for_training
    if not count:
        return TrainingData(train=train, held_out=held_out)
    pseudo = pseudo_queries(dataset, count + spec.pseudo_validation, seed=spec.seed, mix=spec.pseudo_mix,
                            exclude=texts)  # fmt: skip
    held_out += pseudo[: spec.pseudo_validation]
    train += pseudo[spec.pseudo_validation :]
    random.Random(spec.seed).shuffle(train)
    return TrainingData(train=train, held_out=held_out, pseudo_queries=frozenset(pseudo[spec.pseudo_validation :]))


def build_students(
    dataset: Dataset, spec: MainJobSpec, data: TrainingData, teacher: Encoder, show_progress: bool
) -> dict[str, BuiltStudent]:
    """Every candidate of `spec.students`, trained (or found in the cache), exported and quantized."""
    built: dict[str, BuiltStudent] = {}
    for student in spec.students:
        if student == STATIC_STUDENT:
            built[student] = ensure_static_student(dataset, data, replace(spec.static_training_recipe, seed=spec.seed),
                                                   spec.recipe.teacher, teacher, spec.recipe.precision,
                                                   show_progress)  # fmt: skip
        else:
            built[student] = ensure_transformer_student(dataset, data, spec.training_recipe, student, teacher,
                                                        spec.quantization, spec.seed, spec.threads,
                                                        show_progress)  # fmt: skip
    return built


def validate_students(
    dataset: Dataset, spec: MainJobSpec, data: TrainingData, teacher: Encoder, built: dict[str, BuiltStudent],
    show_progress: bool,
) -> tuple[list[dict[str, Any]], float, dict[str, Encoder]]:  # fmt: skip
    """Gate each student's int8 model against its fp32 one, then measure the shipped model's agreement with the
    teacher on the query-like held-out texts (exact search over the teacher's documents) and its single-query encode
    p50, timed interleaved with the teacher's. A student whose int8 model fails the gate ships fp32.
    Return (rows, teacher p50 ms, the shipped query encoder of each student)."""
    teacher_docs = encode_corpus(teacher, dataset.corpus, show_progress=show_progress).vectors
    held_out = query_like(data.held_out)
    teacher_vectors, _ = compute_teacher_targets(teacher, held_out, TEACHER_MAX_LENGTH, show_progress=False,
                                                 precision="fp32")  # fmt: skip
    teacher_top = top_k_rows(teacher_vectors, teacher_docs, 10)
    shipped: dict[str, Encoder] = {}
    gates: dict[str, AgreementGate] = {}
    vectors: dict[str, np.ndarray] = {}
    for name, student in built.items():
        int8, fp32 = student.encoder("int8", threads=spec.threads), student.encoder("fp32", threads=spec.threads)
        int8_vectors, fp32_vectors = int8.encode(held_out), fp32.encode(held_out)
        gates[name] = agreement_gate(fp32_vectors, int8_vectors, teacher_vectors, teacher_docs,
                                     spec.int8_tolerance, teacher_top)  # fmt: skip
        shipped[name], vectors[name] = (int8, int8_vectors) if gates[name].passed else (fp32, fp32_vectors)
        if not gates[name].passed:
            logger.warning("%s: int8 failed the gate (recall@10 vs teacher %.3f -> %.3f, tolerance %.3f): "
                           "shipping fp32", name, gates[name].fp32_recall, gates[name].int8_recall,
                           spec.int8_tolerance)  # fmt: skip
    latency = encode_p50_ms({"teacher": teacher, **shipped}, held_out[: spec.latency_texts])
    rows = []
    for name, encoder in shipped.items():
        agreed = agreement(vectors[name], teacher_vectors, teacher_docs, 10, teacher_top)
        rows.append({
            "name": name,
            "encoder": encoder.name,
            VALIDATION_METRIC: agreed.recall_vs_teacher,
            "val_cosine": agreed.cosine,
            "encode_ms_p50": latency[name],
            "model_bytes": encoder.model_bytes(),
            "val_texts": len(held_out),
            "int8_gate": gates[name].to_dict(),
        })  # fmt: skip
    return rows, latency["teacher"], shipped


def run_main_job(spec: MainJobSpec, show_progress: bool = True) -> MainJobResult:
    """Teacher pipeline, every candidate student over the teacher's documents, the picked one as `compressed`, and the
    naive int8 reference, evaluated on `spec.split` against qrels and the teacher's exact top-10."""
    dataset = load_dataset(spec.dataset)
    if spec.quick:
        dataset = quick_subset(dataset, spec.split, spec.quick_distractors, spec.seed)
    _, query_texts, _ = dataset.split_queries(spec.split)  # fail early on a dataset without qrels
    teacher = load_encoder(spec.recipe.teacher, threads=spec.threads, precision=spec.teacher_precision)
    validate_factory(spec.teacher_index, teacher.dim)
    if spec.compressed_factory != AUTO_INDEX:
        validate_factory(spec.compressed_factory, teacher.dim)  # fail on a bad factory before the distillation
    data = split_training_texts(dataset, spec)
    built = build_students(dataset, spec, data, teacher, show_progress)
    selection, teacher_p50, encoders = validate_students(dataset, spec, data, teacher, built, show_progress)
    picked_row, reason = budget_pick(selection, teacher_p50, spec.budget_ratio, metric=VALIDATION_METRIC)
    picked = str(picked_row["name"])
    logger.info("picked %s: %s", picked, reason)

    choice = None
    compressed_spec = IndexSpec(spec.compressed_factory, seed=spec.seed) if spec.compressed_factory != AUTO_INDEX \
        else None  # fmt: skip
    if compressed_spec is None:
        docs = encode_corpus(teacher, dataset.corpus, show_progress=show_progress).vectors  # cached
        choice = choose_index(docs, encoders[picked].encode(query_like(data.held_out)), ChoiceRule(seed=spec.seed))
        logger.info("compressed index: %s %s (recall@10 vs exact %.4f, %.1f B/vector)", choice.factory,
                    choice.search_params, choice.recall, choice.bytes_per_vector)  # fmt: skip
        compressed_spec = IndexSpec(choice.factory, seed=spec.seed, search_params=choice.search_params)

    def others(dim: int) -> IndexSpec:
        """The other pipelines' codes: the chosen candidate fitted to their documents' dimension."""
        factory = choice.resolve(len(dataset.corpus), dim) if choice is not None else compressed_spec.factory
        return IndexSpec(factory, seed=spec.seed)

    layouts: list[tuple[str, Encoder, Encoder, IndexSpec]] = [
        ("teacher", teacher, teacher, IndexSpec(spec.teacher_index, seed=spec.seed)),
        ("compressed", encoders[picked], teacher, compressed_spec),
    ]
    if choice is not None:
        layouts.append((SQ8_ROW, encoders[picked], teacher, IndexSpec("SQ8", seed=spec.seed, vectors="none")))
    layouts += [(f"student:{name}", enc, teacher, others(teacher.dim)) for name, enc in encoders.items()
                if name != picked]  # fmt: skip
    if spec.reference is not None:
        calibration = [doc.full_text() for doc in dataset.corpus[:256]]
        naive = OnnxEncoder(base_model_int8(spec.reference, spec.quantization, calibration),
                            name=f"{spec.reference}-int8", threads=spec.threads)  # fmt: skip
        layouts.append((f"{spec.reference}-int8 (naive, symmetric)", naive, naive, others(naive.dim)))
    root = spec.runs_dir / dataset.name
    pipelines: dict[str, Pipeline] = {}
    for name, query_encoder, doc_encoder, index_spec in layouts:
        out = root / name.split(" ")[0].replace(":", "-") if name != SQ8_ROW else root / "compressed-sq8"
        build_index_dir(dataset, query_encoder, index_spec, out, show_progress=show_progress,
                        doc_encoder=doc_encoder)  # fmt: skip
        pipelines[name] = Pipeline(query_encoder, load_index_dir(out))
    reference = pipelines["teacher"]
    teacher_top = exact_top_ids(reference, dataset, query_texts, 10, show_progress)
    rows = []
    for (name, query_encoder, doc_encoder, index_spec), pipeline in zip(layouts, pipelines.values(), strict=True):
        report = evaluate(pipeline, dataset, spec.split, reference=reference, show_progress=show_progress,
                          reference_top_ids=teacher_top)  # fmt: skip
        report["model_bytes"] = query_encoder.model_bytes()
        rows.append(PipelineRow(name, query_encoder.name, doc_encoder.name, index_spec.factory, report))
    passed = {row["name"]: row["int8_gate"]["passed"] for row in selection}
    students = {name: {"family": s.family, "fp32_dir": str(s.fp32_dir), "int8_dir": str(s.int8_dir),
                       "shipped": "int8" if passed[name] else "fp32",
                       "shipped_dir": str(s.int8_dir if passed[name] else s.fp32_dir),
                       "from_cache": s.from_cache} for name, s in built.items()}  # fmt: skip
    return MainJobResult(
        dataset=dataset.name,
        subset=spec.quick,
        documents=len(dataset.corpus),
        queries=len(query_texts),
        rows=rows,
        selection=selection,
        picked=picked,
        reason=reason,
        students=students,
        training_texts=len(data.train),
        index_choice=choice.to_dict() if choice is not None else None,
    )


def _params_text(params: dict[str, float]) -> str:
    return ",".join(f"{name}={value:g}" for name, value in params.items())


def side_by_side(result: MainJobResult) -> str:
    """The comparison as a plain-text table, ratios against the teacher's row, then the pick and its reason."""
    teacher = result.rows[0].report
    label = (
        f" [{SUBSET_LABEL}: {result.documents} docs, not comparable with full-corpus figures]" if result.subset else ""
    )
    lines = [
        f"{result.dataset}{label}: {result.queries} test queries, one at a time",
        f"{'pipeline':<34} {'nDCG@10':>8} {'R@10 vs teacher':>16} {'encode ms':>10} {'total ms':>9} "
        f"{'speed-up':>9} {'model MB':>9} {'B/vector':>9}",
    ]
    for row in result.rows:
        r = row.report
        speed_up = teacher["total_ms_p50"] / r["total_ms_p50"] if r["total_ms_p50"] else float("nan")
        lines.append(
            f"{row.name:<34} {r['ndcg@10']:>8.4f} {r.get('recall@10_vs_teacher', float('nan')):>16.3f} "
            f"{r['encode_ms_p50']:>10.2f} {r['total_ms_p50']:>9.2f} {speed_up:>8.1f}x "
            f"{r['model_bytes'] / 1e6:>9.1f} {r['bytes_per_vector']:>9.1f}"
        )
    lines.append(f"compressed = {result.picked}: {result.reason}")
    if result.index_choice:
        choice = result.index_choice
        tried = "; ".join(f"{t['factory']} {_params_text(t['search_params'])} R@10 {t['recall']:.4f} at "
                          f"{t['bytes_per_vector']:.0f} B" if "recall" in t else f"{t['factory']}: {t['error']}"
                          for t in choice["tried"])  # fmt: skip
        verdict = "" if choice["met_target"] else " (none reached the target: the largest kept)"
        lines.append(f"compressed index = {choice['factory']}{verdict}, chosen as {choice['rule']}: {tried}")
    texts = result.selection[0].get("val_texts", 0) if result.selection else 0
    lines.append(f"validation ({texts} held-out query-like texts, never test queries): " + "; ".join(
        f"{row['name']} R@10 vs teacher {row[VALIDATION_METRIC]:.3f}, encode p50 {row['encode_ms_p50']:.2f} ms"
        for row in result.selection))  # fmt: skip
    lines.append("int8 gate (recall@10 vs teacher on the same texts, fp32 -> int8; cosine int8 to fp32): " + "; ".join(
        f"{row['name']} {gate['fp32_recall']:.3f} -> {gate['int8_recall']:.3f}, cos {gate['cosine_to_fp32']:.4f}, "
        + ("passed" if gate["passed"] else "FAILED: ships fp32")
        for row in result.selection if (gate := row.get("int8_gate"))))  # fmt: skip
    lines.append(f"training: {result.training_texts} texts (corpus text and pseudo-queries)")
    lines.append(f"latency: p50 per query; encoders: {', '.join(f'{r.name}={r.query_encoder}' for r in result.rows)}")
    return "\n".join(lines)
