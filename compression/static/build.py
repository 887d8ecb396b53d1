"""A static encoder from a teacher, in one call: `build_static_encoder` (init -> fit -> save) and `save_static`,
which publishes a static folder atomically (see `compression.static.encoder` for its layout)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.models import model_bytes, model_fingerprint
from compression.static.config import StaticConfig
from compression.static.encoder import (
    STATIC_CONFIG_FILE,
    STATIC_REPORT_FILE,
    STATIC_TABLE_FILE,
    STATIC_TOKENIZER_FILE,
    StaticModelConfig,
)
from compression.static.token_init import initial_table, teacher_tokenizer_file
from compression.static.train import StaticTrainReport, static_tokenizer, train_static
from semsearch_common.atomic import copy_file_atomic, save_array_atomic, staged_folder, write_json_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticReport:
    """What `build_static_encoder` did: the config, the init's seconds, the fit's report, where the folder went."""

    out_dir: str
    config: StaticConfig
    init_seconds: float
    train: StaticTrainReport
    vocab_size: int
    dim: int
    model_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "config": self.config.to_dict(),
            "init_seconds": self.init_seconds,
            "train": self.train.to_dict(),
            "vocab_size": self.vocab_size,
            "dim": self.dim,
            "model_bytes": self.model_bytes,
        }


def save_static(
    table: np.ndarray,
    teacher_dir: Path,
    out_dir: Path,
    config: StaticConfig,
    trained: bool = True,
    report: dict[str, Any] | None = None,
) -> StaticModelConfig:
    """Publish a float32 static folder at `out_dir` atomically: the table, the teacher's tokenizer.json, the
    `StaticModelConfig` (truncation and lower-casing as the teacher's) and `report` as static_report.json."""
    teacher_dir = Path(teacher_dir)
    tokenizer = static_tokenizer(teacher_dir, config.max_seq_length)
    vocab_size = tokenizer.tokenizer.get_vocab_size()
    if table.ndim != 2 or table.shape[0] < vocab_size:
        raise ValueError(f"a static table needs {vocab_size} rows (one per token), got shape {table.shape}")
    model_config = StaticModelConfig(
        dim=int(table.shape[1]),
        vocab_size=int(table.shape[0]),
        max_seq_length=config.max_seq_length,
        max_tokens=tokenizer.max_tokens,
        empty_token_id=tokenizer.empty_token_id,
        do_lower_case=tokenizer.do_lower_case,
        precision="fp32",
        token_init=config.token_init,
        trained=trained,
        source_path=str(teacher_dir.resolve()),
        source_fingerprint=model_fingerprint(teacher_dir),
    )
    with staged_folder(out_dir) as staging:
        save_array_atomic(staging / STATIC_TABLE_FILE, np.ascontiguousarray(table, dtype=np.float32))
        copy_file_atomic(teacher_tokenizer_file(teacher_dir), staging / STATIC_TOKENIZER_FILE)
        write_json_atomic(staging / STATIC_CONFIG_FILE, model_config.to_dict())
        if report is not None:
            write_json_atomic(staging / STATIC_REPORT_FILE, report)
    return model_config


def build_static_encoder(
    teacher_dir: Path,
    texts: Sequence[str],
    targets: np.ndarray,
    out_dir: Path,
    config: StaticConfig = StaticConfig(),  # noqa: B008 - frozen, so a shared default is safe
    eval_texts: Sequence[str] = (),
    eval_targets: np.ndarray | None = None,
    teacher_documents: np.ndarray | None = None,
    show_progress: bool = True,
    initial: np.ndarray | None = None,
) -> StaticReport:
    """Initialise a table from the teacher (`config.token_init`; or pass `initial`, e.g. a saved `token_vectors`
    table, to skip it), fit it to `targets` (the teacher's unit vectors of `texts`, truncated at
    `config.max_seq_length`) and publish the folder at `out_dir`. Never pass test queries as texts."""
    started = time.perf_counter()
    if initial is None:
        initial = initial_table(teacher_dir, config.token_init, config.init_precision, show_progress=show_progress)
    init_seconds = time.perf_counter() - started
    table, train_report = train_static(
        initial,
        Path(teacher_dir),
        texts,
        targets,
        config,
        eval_texts=eval_texts,
        eval_targets=eval_targets,
        teacher_documents=teacher_documents,
        show_progress=show_progress,
    )
    partial = {
        "config": config.to_dict(),
        "init_seconds": init_seconds,
        "train": train_report.to_dict(),
        "teacher": str(Path(teacher_dir).resolve()),
    }
    model_config = save_static(
        table, Path(teacher_dir), Path(out_dir), config, trained=config.epochs > 0, report=partial
    )
    report = StaticReport(
        out_dir=str(Path(out_dir).resolve()),
        config=config,
        init_seconds=init_seconds,
        train=train_report,
        vocab_size=model_config.vocab_size,
        dim=model_config.dim,
        model_bytes=model_bytes(Path(out_dir)),
    )
    logger.info(
        "static encoder at %s: eval cosine %s -> %s",
        out_dir,
        train_report.eval_cosine_before,
        train_report.eval_cosine_after,
    )
    return report
