"""Training and the whole run: `train_student` (a plain seeded torch loop), the held-out evaluation figures,
`save_student` (published atomically) and `distill`, which runs targets -> student -> training -> report -> save.

torch and sentence-transformers are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compression.distill.batching import cut_batches, length_grouped, neighbour_order
from compression.distill.config import CONFIG_FILE, REPORT_FILE, DistillConfig
from compression.distill.losses import distillation_loss
from compression.distill.students import build_student, freeze_embeddings, pooled_embeddings, set_dropout
from compression.distill.targets import TeacherEncoder, compute_teacher_targets
from compression.encoders import l2_normalise
from compression.precision import autocast, resolve_precision
from semsearch_common.atomic import staged_folder, write_json_atomic
from semsearch_common.progress import make_progress

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class DistillReport:
    """What a distillation run did: per-epoch mean losses, time, sizes, and where the student went."""

    config: DistillConfig
    epoch_losses: list[float]
    seconds: float
    texts: int
    steps: int
    student_dim: int
    teacher_dim: int
    device: str = "cpu"
    precision: str = "fp32"
    kept_layers: list[int] | None = None
    projection_added: bool = False
    targets_from_cache: bool = False
    targets_seconds: float = 0.0
    eval_texts: int = 0
    eval_cosine_before: float | None = None
    eval_cosine_after: float | None = None
    eval_top10_overlap_before: float | None = None
    eval_top10_overlap_after: float | None = None
    output_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data


# -------------------------------------------------------------------------------------------------------- training


def _to_device(features: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def embed_for_training(model: SentenceTransformer, texts: Sequence[str], device: str) -> torch.Tensor:
    """The student's sentence embeddings of `texts`, with gradients (forward pass of one training batch)."""
    features = _to_device(model.preprocess(list(texts)), device)
    return model(features)["sentence_embedding"]


def _boost(
    batch: np.ndarray,
    positives: Sequence[Sequence[int]] | None,
    label_boost: float,
    documents: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor | None:
    """The (batch x documents) teacher-logit boost of judged-relevant documents, or None when there is none."""
    if not positives or not label_boost or documents is None:
        return None
    import torch

    rows = [(row, doc) for row, i in enumerate(batch) for doc in positives[i]]
    if not rows:
        return None
    boost = torch.zeros(len(batch), documents[1].shape[0])
    boost[[r for r, _ in rows], [d for _, d in rows]] = label_boost
    return boost.to(documents[1].device)


def curriculum_stages(n: int, config: DistillConfig, query_like: Sequence[bool] | None) -> list[np.ndarray]:
    """The rows trained in each stage: all of them (`mixed`), or corpus texts then query-like texts
    (`corpus-first`), or the reverse (`queries-first`); an empty stage is dropped."""
    if config.curriculum == "mixed":
        return [np.arange(n)]
    if query_like is None or len(query_like) != n:
        raise ValueError(f"the {config.curriculum!r} curriculum needs query_like: one flag per training text")
    flags = np.asarray(query_like, dtype=bool)
    corpus, queries = np.flatnonzero(~flags), np.flatnonzero(flags)
    stages = [corpus, queries] if config.curriculum == "corpus-first" else [queries, corpus]
    return [rows for rows in stages if len(rows)]


def make_optimizer(parameters: list[Any], config: DistillConfig) -> Any:
    """AdamW over `parameters` with the fused kernel where torch has it for their device (one pass over every
    tensor per step), else the multi-tensor (`foreach`) one."""
    import torch

    settings = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    try:
        return torch.optim.AdamW(parameters, fused=True, **settings)
    except (RuntimeError, TypeError, ValueError) as err:  # a torch or device without the fused kernel
        logger.debug("fused AdamW unavailable (%s): using foreach", err)
        return torch.optim.AdamW(parameters, foreach=True, **settings)


def train_student(
    model: SentenceTransformer,
    texts: Sequence[str],
    targets: np.ndarray,
    config: DistillConfig,
    device: str = "cpu",
    show_progress: bool = True,
    documents: tuple[np.ndarray, np.ndarray] | None = None,
    positives: Sequence[Sequence[int]] | None = None,
    query_like: Sequence[bool] | None = None,
) -> tuple[list[float], int, float]:
    """Train `model` in place to reproduce `targets` (the teacher's vectors of `texts`); return (mean loss per epoch
    and stage, optimiser steps, seconds).

    `query_like[i]` marks text i as a query (a pseudo-query or a train query) rather than corpus text; the
    `corpus-first` and `queries-first` curricula need it (see `curriculum_stages`). Embedding tables are frozen and
    dropout is off as `config` says.

    The forward pass runs under `config.precision`'s autocast (bf16 where it is native), the loss in fp32.
    `documents` = (student-side, teacher-side) unit document vectors, for the `rank` losses. Seeded by `config.seed`
    (initial state and batch order). With an in-batch KL term, a final batch of one text is skipped. `positives[i]`
    lists the document rows judged relevant to text i (train queries only), boosted by `config.label_boost`.
    """
    import torch

    if "rank" in config.loss and documents is None:
        raise ValueError(f"the {config.loss!r} loss needs documents=(student's, teacher's) document vectors")
    document_tensors = None
    if documents is not None:
        student_docs, teacher_docs = (torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32)) for d in documents)
        if teacher_docs.shape[1] != targets.shape[1]:
            raise ValueError(f"teacher documents are {teacher_docs.shape[1]}-d, the targets {targets.shape[1]}-d")
        document_tensors = (student_docs.to(device), teacher_docs.to(device))

    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    min_batch = 2 if config.loss in ("kl", "mse+kl") else 1
    lengths = np.array([len(text) for text in texts])
    stages = curriculum_stages(len(texts), config, query_like)
    stage_steps = [len(cut_batches(rows, config.batch_size, min_batch)) for rows in stages]
    if sum(stage_steps) == 0:
        raise ValueError(f"{len(texts)} texts make no training batch: give at least {min_batch}")
    total_steps = sum(stage_steps) * config.epochs
    warmup_steps = int(round(config.warmup_ratio * total_steps))
    stage_scale = [1.0]  # the second stage of a curriculum trains at config.second_stage_lr times the schedule

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return stage_scale[0] * (step + 1) / (warmup_steps + 1)
        return stage_scale[0] * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    model.to(device)
    if config.freeze_embeddings:
        frozen = freeze_embeddings(model)
        logger.info("frozen: %s", ", ".join(frozen))
    set_dropout(model, config.dropout)
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(parameters, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    target_tensor = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    epoch_losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    passes = [(stage, epoch) for stage in range(len(stages)) for epoch in range(1, config.epochs + 1)]
    try:
        with make_progress(show_progress) as progress:
            task = progress.add_task("distilling", total=total_steps, info="")
            for stage, epoch in passes:
                rows = stages[stage]
                stage_scale[0] = 1.0 if stage == 0 else config.second_stage_lr
                losses: list[float] = []
                if config.batching == "neighbours":
                    order = rows[neighbour_order(targets[rows], config.batch_size, rng)]
                else:
                    order = rng.permutation(rows)
                    if config.length_grouping:
                        order = length_grouped(order, lengths, config.batch_size, rng)
                for batch in cut_batches(order, config.batch_size, min_batch):
                    with autocast(config.precision, device):  # the transformer in bf16 where it pays ...
                        student = embed_for_training(model, [texts[i] for i in batch], device)
                    student = student.float()  # ... the loss in fp32: rank logits are cos / 0.05
                    loss = distillation_loss(
                        student,
                        target_tensor[batch].to(device),
                        config.loss,
                        kl_weight=config.kl_weight,
                        temperature=config.temperature,
                        documents=document_tensors,
                        teacher_boost=_boost(batch, positives, config.label_boost, document_tensors),
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm, foreach=True)
                    optimizer.step()
                    scheduler.step()
                    steps += 1
                    losses.append(float(loss.detach()))
                    label = f"epoch {epoch}/{config.epochs}" + (f" stage {stage + 1}/{len(stages)}" if stage else "")
                    progress.update(task, advance=1, info=f"{label} loss {sum(losses) / len(losses):.4f}")
                epoch_losses.append(sum(losses) / len(losses) if losses else float("nan"))
                logger.info("stage %d/%d epoch %d/%d: mean loss %.6f over %d steps", stage + 1, len(stages), epoch,
                            config.epochs, epoch_losses[-1], len(losses))  # fmt: skip
    finally:
        model.eval()
    return epoch_losses, steps, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------------ evaluation


def mean_cosine(model: SentenceTransformer, texts: Sequence[str], targets: np.ndarray, batch_size: int = 32) -> float:
    """Mean cosine between the model's vectors of `texts` and `targets` (same dim): how close student is to teacher."""
    vectors = l2_normalise(pooled_embeddings(model, texts, batch_size))
    return float(np.mean(np.sum(vectors * l2_normalise(targets), axis=1)))


def ranking_overlap(
    model: SentenceTransformer,
    texts: Sequence[str],
    targets: np.ndarray | None,
    documents: tuple[np.ndarray, np.ndarray] | None,
    k: int = 10,
) -> float | None:
    """Mean overlap of the student's and the teacher's top-k documents for `texts` (None without texts or documents):
    the held-out figure the rank loss optimises."""
    if documents is None or targets is None or not len(texts):
        return None
    student_docs, teacher_docs = documents
    k = min(k, len(teacher_docs))
    vectors = l2_normalise(pooled_embeddings(model, texts))
    student_top = np.argsort(-(vectors @ student_docs.T), axis=1)[:, :k]
    teacher_top = np.argsort(-(l2_normalise(targets) @ teacher_docs.T), axis=1)[:, :k]
    return float(np.mean([len(set(s) & set(t)) / k for s, t in zip(student_top, teacher_top, strict=True)]))


# ---------------------------------------------------------------------------------------------------------- saving


def save_student(model: SentenceTransformer, out_dir: Path, report: DistillReport) -> Path:
    """Publish `model` as a sentence-transformers folder at `out_dir` with `distill_config.json` and
    `distill_report.json`: written into a staging folder beside it, then renamed into place whole."""
    out_dir = Path(out_dir)
    report.output_dir = str(out_dir.resolve())
    with staged_folder(out_dir) as staging:
        model.save(str(staging), create_model_card=False)
        write_json_atomic(staging / CONFIG_FILE, report.config.to_dict())
        write_json_atomic(staging / REPORT_FILE, report.to_dict())
    logger.info("saved the student to %s", out_dir)
    return out_dir


# ------------------------------------------------------------------------------------------------------------- run


def distill(
    texts: Sequence[str],
    out_dir: Path,
    config: DistillConfig | None = None,
    teacher: TeacherEncoder | None = None,
    eval_texts: Sequence[str] = (),
    device: str = "cpu",
    threads: int | None = None,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    teacher_documents: np.ndarray | None = None,
    student_documents: np.ndarray | None = None,
    positives: Sequence[Sequence[int]] | None = None,
    targets: np.ndarray | None = None,
    query_like: Sequence[bool] | None = None,
) -> DistillReport:
    """Distil `config.teacher` (or the given `teacher` encoder) into `config.student` on `texts`; save to `out_dir`.

    `config` defaults to `DistillConfig()`, the shipped recipe. The `rank` losses rank every text against a fixed
    document set: `teacher_documents` (the teacher's unit vectors of the corpus) on the teacher side and, on the
    student side, `student_documents` (a frozen document tower, e.g. the base student's corpus vectors) or, when not
    given, the teacher's documents themselves (asymmetric mode: the student must then share the teacher's dim).
    `positives[i]` (rows of the document set judged relevant to texts[i]; train queries only, never test queries)
    adds `config.label_boost` to those documents' teacher logits. `targets` are the teacher's vectors of `texts` when
    the caller has them (e.g. from two cached parts). `query_like` flags the query texts for a curriculum. The
    report then also gives the held-out top-10 overlap of the
    student's and the teacher's rankings of those documents, before and after.

    `texts` are the training texts, used in the given order up to `config.max_texts` (shuffle them first); the
    projection is fitted on the first `config.projection_fit_texts` of them. `eval_texts` (held out from training,
    and never test queries either) give the student-teacher mean cosine before and after training in the report.
    Teacher targets are cached (see `compute_teacher_targets`).
    """
    import torch

    config = config or DistillConfig()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: use cpu or cuda[:N]")
    texts = list(texts)[: config.max_texts] if config.max_texts is not None else list(texts)
    if len(texts) < 2:
        raise ValueError(f"distillation needs at least 2 training texts, got {len(texts)}")
    if teacher is None:
        from compression.encoders import load_encoder

        teacher = load_encoder(config.teacher, device=device)
    started = time.perf_counter()
    if targets is not None:
        if len(targets) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(targets)} targets")
        from_cache = True
    else:
        targets, from_cache = compute_teacher_targets(
            teacher, texts, config.max_seq_length, config.batch_size, cache_dir, show_progress=show_progress,
            precision=config.precision, device=device,
        )  # fmt: skip
    targets_seconds = time.perf_counter() - started
    eval_targets = None
    if eval_texts:
        eval_targets, _ = compute_teacher_targets(
            teacher, eval_texts, config.max_seq_length, config.batch_size, cache_dir, show_progress=False,
            precision=config.precision, device=device,
        )  # fmt: skip
    fit = min(config.projection_fit_texts, len(texts))
    student = build_student(config, targets.shape[1], texts[:fit], targets[:fit], device)
    documents = None
    if "rank" in config.loss:
        if teacher_documents is None:
            raise ValueError(f"the {config.loss!r} loss needs teacher_documents (the teacher's corpus vectors)")
        student_side = teacher_documents if student_documents is None else student_documents
        if student_side.shape[1] != student.model.get_embedding_dimension():
            raise ValueError(
                f"the student is {student.model.get_embedding_dimension()}-d but its document set is "
                f"{student_side.shape[1]}-d: pass student_documents in the student's space, or project the student"
            )
        documents = (l2_normalise(student_side), l2_normalise(teacher_documents))
    comparable = eval_targets is not None and student.model.get_embedding_dimension() == eval_targets.shape[1]
    before = mean_cosine(student.model, eval_texts, eval_targets) if comparable else None
    overlap_before = ranking_overlap(student.model, eval_texts, eval_targets, documents)
    epoch_losses, steps, seconds = train_student(
        student.model, texts, targets, config, device, show_progress, documents=documents, positives=positives,
        query_like=None if query_like is None else list(query_like)[: len(texts)],
    )  # fmt: skip
    after = mean_cosine(student.model, eval_texts, eval_targets) if comparable else None
    overlap_after = ranking_overlap(student.model, eval_texts, eval_targets, documents)
    report = DistillReport(
        config=config,
        epoch_losses=epoch_losses,
        seconds=seconds,
        texts=len(texts),
        steps=steps,
        student_dim=int(student.model.get_embedding_dimension()),
        teacher_dim=int(targets.shape[1]),
        device=device,
        precision=resolve_precision(config.precision, device),
        kept_layers=student.kept_layers,
        projection_added=student.projection_added,
        targets_from_cache=from_cache,
        targets_seconds=targets_seconds,
        eval_texts=len(eval_texts),
        eval_cosine_before=before,
        eval_cosine_after=after,
        eval_top10_overlap_before=overlap_before,
        eval_top10_overlap_after=overlap_after,
    )
    if student.inference_max_seq_length is not None:
        # trained on truncated texts for speed, but searched with the base model's own length: documents are longer
        student.model.max_seq_length = student.inference_max_seq_length
    save_student(student.model, out_dir, report)
    if before is not None:
        logger.info("held-out student-teacher cosine %.4f -> %.4f", before, after)
    return report
