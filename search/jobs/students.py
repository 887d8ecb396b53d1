"""The main job's student candidates: query encoders trained into the teacher's space, built and cached per dataset.

A candidate is named by a student spec: a transformer student (`teacher-layers:0,11`, `minilm`, `minilm-layers:0,2,5`,
a folder; trained with `distill` under the job's `DistillConfig`, projected to the teacher's dim when it has another)
or `static` (one vector per token, see `compression.static`). Each is distilled on the dataset's training texts,
exported and quantized to int8, and cached under `cache_root()/students/<key>`, the key hashing the recipe, the
training texts, the corpus and the teacher's identity, so a second run reuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compression.distill import DistillConfig, compute_teacher_targets, parse_student, texts_fingerprint
from compression.encoders import Encoder
from compression.encoders.onnx import OnnxEncoder
from compression.models import model_fingerprint, resolve_model
from compression.onnx_export import export_onnx
from compression.precision import resolve_precision
from compression.quantize import quantize_onnx
from compression.static import (
    STATIC_CONFIG_FILE,
    StaticConfig,
    StaticEncoder,
    build_static_encoder,
    load_teacher,
    quantize_static,
    token_vectors,
    vocabulary_size,
)
from search.data.datasets import Dataset, corpus_fingerprint
from search.embeddings import encode_corpus
from search.jobs.distill import distill_on_dataset
from semsearch_common.array_cache import RowCache
from semsearch_common.cache import cache_key, cache_root, location_free

logger = logging.getLogger(__name__)

STUDENTS_DIR = "students"
STUDENT_KEY_LENGTH = 24
STATIC_STUDENT = "static"
REPORT_FILE = "distill_report.json"
TOKEN_VECTORS_DIR = "static-token-vectors"


@dataclass(frozen=True)
class BuiltStudent:
    """A trained candidate: its spec, fp32 and int8 folders, and whether it came from the cache."""

    spec: str
    fp32_dir: Path
    int8_dir: Path
    from_cache: bool

    @property
    def family(self) -> str:
        if self.spec == STATIC_STUDENT:
            return "static"
        return parse_student(self.spec)[0]

    def encoder(self, precision: str = "int8", threads: int | None = None) -> Encoder:
        """The candidate's query encoder, torch-free (ONNX Runtime or numpy)."""
        folder = self.int8_dir if precision == "int8" else self.fp32_dir
        name = f"{self.spec}-{precision}"
        if self.spec == STATIC_STUDENT:
            return StaticEncoder(folder, name=name)
        return OnnxEncoder(folder, name=name, threads=threads)


def validate_student_spec(spec: str) -> None:
    """Raise ValueError listing the allowed forms unless `spec` names a student the main job can build."""
    if spec != STATIC_STUDENT:
        try:
            parse_student(spec)
        except ValueError as err:
            raise ValueError(f"{err}, or {STATIC_STUDENT}") from err


def student_key(config: Any, data: dict[str, str], teacher_identity: dict[str, Any]) -> str:
    """Cache key of a distilled student: the recipe, the data (texts and corpus hashes) and the teacher (not its
    location)."""
    payload = {"config": config.to_dict(), "data": data, "teacher": location_free(teacher_identity)}
    return cache_key(payload, length=STUDENT_KEY_LENGTH)


def ensure_int8(model_dir: Path, onnx_dir: Path, mode: str, calibration: list[str]) -> Path:
    """fp32 ONNX export and int8 quantization of `model_dir` into `onnx_dir` (cached); return the int8 folder."""
    fp32_dir, int8_dir = onnx_dir / "fp32", onnx_dir / f"int8-{mode}"
    if not (fp32_dir / "onnx_config.json").exists():
        export_onnx(model_dir, fp32_dir)
    if not (int8_dir / "onnx_config.json").exists():
        quantize_onnx(fp32_dir, int8_dir, mode=mode, calibration_texts=calibration if mode == "static" else None)  # type: ignore[arg-type]
    return int8_dir


def base_model_int8(spec: str, mode: str, calibration: list[str]) -> Path:
    """int8 ONNX of an off-the-shelf model (e.g. `minilm`, the naive reference), cached by its content."""
    base = resolve_model(spec).path
    return ensure_int8(base, cache_root() / STUDENTS_DIR / f"base-{model_fingerprint(base)[:16]}-onnx", mode,
                       calibration)  # fmt: skip


@dataclass(frozen=True)
class TrainingData:
    """The texts every candidate trains on (`train`) and the held-out slice it is validated on (`held_out`)."""

    train: list[str]
    held_out: list[str]
    pseudo_queries: frozenset[str] = frozenset()  # the training texts that are pseudo-queries

    def fingerprint(self, dataset: Dataset) -> dict[str, str]:
        return {"dataset": corpus_fingerprint(dataset.corpus), "texts": texts_fingerprint(self.held_out + self.train)}


def transformer_config(recipe: DistillConfig, spec: str, seed: int) -> DistillConfig:
    """The recipe for one transformer candidate: its student, projected into the teacher's space when needed."""
    return replace(recipe, student=spec, projection="auto", seed=seed)


def ensure_transformer_student(
    dataset: Dataset, data: TrainingData, recipe: DistillConfig, spec: str, teacher: Encoder, quantization: str,
    seed: int, threads: int, show_progress: bool,
) -> BuiltStudent:  # fmt: skip
    """Distil (or reuse) the transformer candidate `spec`, then export and quantize it."""
    config = transformer_config(recipe, spec, seed)
    out = cache_root() / STUDENTS_DIR / student_key(config, data.fingerprint(dataset), teacher.identity())
    from_cache = (out / REPORT_FILE).exists()
    if from_cache:
        logger.info("reusing the distilled student %s (%s)", out, spec)
    else:
        logger.info("distilling %s on %d texts into %s", spec, len(data.train), out)
        distill_on_dataset(dataset, config, out, train_texts=data.train, held_out=data.held_out, teacher=teacher,
                           threads=threads, show_progress=show_progress,
                           pseudo_queries=data.pseudo_queries)  # fmt: skip
    calibration = [doc.full_text() for doc in dataset.corpus[:256]]
    onnx_dir = out.parent / f"{out.name}-onnx"
    int8_dir = ensure_int8(out, onnx_dir, quantization, calibration)
    return BuiltStudent(spec, onnx_dir / "fp32", int8_dir, from_cache)


def cached_token_vectors(
    teacher_dir: Path, teacher: Encoder, config: StaticConfig, show_progress: bool
) -> np.ndarray | None:
    """The teacher's per-token vectors, the static encoder's starting table (one teacher pass per vocabulary token),
    computed once per teacher and precision in the resumable row cache; None for inits that need no forward pass."""
    if config.token_init != "teacher-tokens":
        return None
    precision = resolve_precision(config.init_precision)
    key = cache_key({"teacher": location_free(teacher.identity()), "precision": precision, "rows": "token-vectors"})
    model: list[Any] = []  # the teacher's torch model, loaded on the first chunk only (none on a cache hit)

    def rows(ids: Sequence[int]) -> np.ndarray:
        if not model:
            model.append(load_teacher(teacher_dir))
        return token_vectors(teacher_dir, autocast=precision == "bf16", show_progress=False, token_ids=ids,
                             model=model[0])  # fmt: skip

    size = vocabulary_size(teacher_dir)
    cache = RowCache(cache_root() / TOKEN_VECTORS_DIR)
    return cache.compute(key, size, rows, chunk_size=2048, meta={"teacher": teacher.identity()},
                         label="teacher token vectors", unit="tokens", show_progress=show_progress).vectors  # fmt: skip


def ensure_static_student(
    dataset: Dataset, data: TrainingData, config: StaticConfig, teacher_spec: str, teacher: Encoder,
    precision: str, show_progress: bool,
) -> BuiltStudent:  # fmt: skip
    """Build (or reuse) the static candidate: token vectors from the teacher, fitted to its sentence vectors."""
    out = cache_root() / STUDENTS_DIR / student_key(config, data.fingerprint(dataset), teacher.identity())
    fp32_dir, int8_dir = out / "fp32", out / "int8"
    from_cache = (fp32_dir / STATIC_CONFIG_FILE).exists()
    if not from_cache:
        teacher_dir = resolve_model(teacher_spec).path
        initial = cached_token_vectors(teacher_dir, teacher, config, show_progress)
        targets, _ = compute_teacher_targets(teacher, data.train, config.max_seq_length, show_progress=show_progress,
                                             precision=precision)  # fmt: skip
        eval_targets, _ = compute_teacher_targets(teacher, data.held_out, config.max_seq_length, show_progress=False,
                                                  precision=precision)  # fmt: skip
        documents = None
        if "rank" in config.loss:
            documents = encode_corpus(teacher, dataset.corpus, show_progress=show_progress).vectors
        build_static_encoder(teacher_dir, data.train, targets, fp32_dir, config, eval_texts=data.held_out,
                             eval_targets=eval_targets, teacher_documents=documents, show_progress=show_progress,
                             initial=initial)  # fmt: skip
    if not (int8_dir / STATIC_CONFIG_FILE).exists():
        quantize_static(fp32_dir, int8_dir)
    return BuiltStudent(STATIC_STUDENT, fp32_dir, int8_dir, from_cache)
