"""Fit the static table to the teacher's sentence vectors: `train_static`, a plain seeded torch loop over an
EmbeddingBag (sum of a text's token rows), the loss on the normalised sums.

Texts are tokenised once into the flat-ids-plus-offsets layout EmbeddingBag takes. With `sparse-adam` only the rows
of a batch's tokens get gradients and moments, so a row never seen in training keeps its init exactly. torch is
imported lazily, inside the functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.static.config import StaticConfig
from compression.static.encoder import (
    StaticTokenizer,
    load_tokenizer,
    pool_rows,
    special_token_count,
    sum_rows,
    unknown_token_id,
)
from compression.static.token_init import teacher_lowercases, teacher_tokenizer_file
from semsearch_common.progress import make_progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticTrainReport:
    """What a fit did: per-epoch mean losses, held-out cosine to the teacher before and after, time and sizes.

    eval_cosine_before / _mapped / _after: mean held-out cosine to the teacher of the init as given, after the
    closed-form `init_map`, after the gradient fit (likewise train_cosine_* on the training texts).
    rows_trained: distinct token ids in the training texts (the rows the gradient fit can move).
    """

    epoch_losses: tuple[float, ...]
    eval_cosine_before: float | None
    eval_cosine_mapped: float | None
    eval_cosine_after: float | None
    train_cosine_before: float | None
    train_cosine_mapped: float | None
    train_cosine_after: float | None
    seconds: float
    steps: int
    texts: int
    tokens: int
    rows_trained: int
    vocab_size: int
    optimizer: str
    init_map: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["epoch_losses"] = list(self.epoch_losses)
        return data


def static_tokenizer(
    tokenizer_dir_or_file: Path, max_seq_length: int, do_lower_case: bool | None = None
) -> StaticTokenizer:
    """The `StaticTokenizer` of a teacher folder (its Transformer module's tokenizer.json and do_lower_case), a
    static folder, or a tokenizer.json file: keeps max_seq_length minus the special tokens, like the teacher."""
    path = Path(tokenizer_dir_or_file)
    file = teacher_tokenizer_file(path) if path.is_dir() else path
    if do_lower_case is None:
        do_lower_case = teacher_lowercases(path) if path.is_dir() else False
    tokenizer = load_tokenizer(file)
    max_tokens = max_seq_length - special_token_count(tokenizer)
    if max_tokens < 1:
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for text after the special tokens")
    return StaticTokenizer(tokenizer, max_tokens, unknown_token_id(tokenizer), do_lower_case)


def mean_cosine(table: np.ndarray, flat: np.ndarray, offsets: np.ndarray, targets: np.ndarray) -> float:
    """Mean cosine between the static vectors of tokenised texts and the (normalised) target rows."""
    vectors = pool_rows(table, flat, offsets)
    unit = targets / np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(vectors * unit, axis=1)))


def map_init(
    table: np.ndarray,
    init_map: str,
    flat: np.ndarray,
    offsets: np.ndarray,
    targets: np.ndarray,
    max_texts: int,
) -> np.ndarray:
    """Apply `init_map` to every row (see `StaticConfig`): `linear` fits W, b by ridge least squares from each
    training text's mean init row to its teacher vector (the first `max_texts` texts) and returns table @ W + b,
    so the mean (hence the direction of the sum) of a text's new rows is the fitted map of its old mean."""
    if init_map == "none":
        return table
    if init_map == "center":
        return table - table.mean(axis=0, keepdims=True)
    if init_map != "linear":
        raise ValueError(f"unknown init_map {init_map!r}: use linear, center or none")
    from compression.distill.students import fit_projection

    if len(offsets) < 2:
        raise ValueError("the linear init_map fits on the training texts: pass at least 2, or use init_map none")
    lengths = np.diff(np.append(offsets, len(flat)))
    chosen = np.arange(min(len(offsets), max_texts))
    ids, chosen_offsets = _gather(flat, offsets, lengths, chosen)
    means = sum_rows(table, ids, chosen_offsets) / lengths[chosen, None]
    weight, bias = fit_projection(means, targets[chosen])
    return (table @ weight.T + bias).astype(np.float32)


def train_static(
    table: np.ndarray,
    tokenizer_dir_or_file: Path,
    texts: Sequence[str],
    targets: np.ndarray,
    config: StaticConfig,
    eval_texts: Sequence[str] = (),
    eval_targets: np.ndarray | None = None,
    teacher_documents: np.ndarray | None = None,
    show_progress: bool = True,
    do_lower_case: bool | None = None,
) -> tuple[np.ndarray, StaticTrainReport]:
    """Fit `table` (vocabulary size x dim) so the normalised sum of each text's token rows approaches the teacher's
    unit vector `targets` of that text; return (the fitted float32 table, the report). `table` is not modified.

    Before the gradient steps the table goes through `config.init_map` (closed form, see `map_init`). It is
    scaled to a mean row norm of 1 before and after that map (outputs are normalised, so this changes no vector; it
    makes the learning rate mean the same for any teacher); the returned table keeps that scale. The loss is `mse`
    (2 - 2 cos) or `mse+rank` against `teacher_documents` (the teacher's unit document vectors, see
    `StaticConfig`). Batches are random (seeded), the learning rate decays linearly to 0.
    """
    import torch

    from compression.distill.losses import distillation_loss

    targets = np.asarray(targets, dtype=np.float32)
    if len(texts) != len(targets) or targets.ndim != 2:
        raise ValueError(f"{len(texts)} texts but targets of shape {targets.shape}: one target row per text")
    if targets.shape[1] != table.shape[1]:
        raise ValueError(f"targets are {targets.shape[1]}-d but the table {table.shape[1]}-d")
    if len(eval_texts) and (eval_targets is None or len(eval_targets) != len(eval_texts)):
        raise ValueError("eval_texts need eval_targets, one row per text")
    if not len(texts) and config.epochs:
        raise ValueError("no training texts: pass texts and targets, or epochs=0 to keep the table as it is")
    if config.loss == "mse+rank" and teacher_documents is None:
        raise ValueError("the mse+rank loss ranks against the teacher's document vectors: pass teacher_documents")
    tokenizer = static_tokenizer(Path(tokenizer_dir_or_file), config.max_seq_length, do_lower_case)
    if tokenizer.tokenizer.get_vocab_size() > table.shape[0]:
        raise ValueError(f"the tokenizer has {tokenizer.tokenizer.get_vocab_size()} tokens, the table {table.shape[0]}")
    started = time.perf_counter()
    flat, offsets = tokenizer.flat(texts)
    lengths = np.diff(np.append(offsets, len(flat)))
    eval_flat, eval_offsets = tokenizer.flat(eval_texts)
    norms = np.linalg.norm(table, axis=1)
    weights = np.array(table, dtype=np.float32) / max(float(norms.mean()), 1e-12)
    eval_before = mean_cosine(weights, eval_flat, eval_offsets, eval_targets) if len(eval_texts) else None
    train_before = mean_cosine(weights, flat, offsets, targets) if len(texts) else None
    weights = map_init(weights, config.init_map, flat, offsets, targets, config.init_map_texts)
    weights /= max(float(np.linalg.norm(weights, axis=1).mean()), 1e-12)
    eval_mapped = mean_cosine(weights, eval_flat, eval_offsets, eval_targets) if len(eval_texts) else None
    train_mapped = mean_cosine(weights, flat, offsets, targets) if len(texts) else None

    torch.manual_seed(config.seed)
    sparse = config.optimizer == "sparse-adam"
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(weights), freeze=False, mode="sum", sparse=sparse)
    if sparse:
        optimizer: Any = torch.optim.SparseAdam(bag.parameters(), lr=config.learning_rate)
    else:
        optimizer = torch.optim.AdamW(bag.parameters(), lr=config.learning_rate, weight_decay=0.0)
    steps_per_epoch = -(-len(texts) // config.batch_size)
    total_steps = max(1, steps_per_epoch * config.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    documents = None
    if config.loss == "mse+rank":
        docs = torch.from_numpy(np.ascontiguousarray(teacher_documents, dtype=np.float32))
        documents = (docs, docs)  # the student's query vectors rank the teacher's own document vectors
    target_rows = torch.from_numpy(targets)
    rng = np.random.default_rng(config.seed)
    epoch_losses: list[float] = []
    with make_progress(show_progress) as progress:
        task = progress.add_task("static fit", total=total_steps if config.epochs else 0, info="")
        for _ in range(config.epochs):
            order = rng.permutation(len(texts))
            losses = []
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                ids, batch_offsets = _gather(flat, offsets, lengths, batch)
                pooled = bag(torch.from_numpy(ids), torch.from_numpy(batch_offsets))
                loss = distillation_loss(
                    pooled,
                    target_rows[torch.from_numpy(batch)],
                    loss=config.loss,
                    kl_weight=config.rank_weight,
                    temperature=config.temperature,
                    documents=documents,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                progress.update(task, advance=1, info=f"loss {np.mean(losses[-20:]):.4f}")
            epoch_losses.append(float(np.mean(losses)))
            logger.info("static fit epoch %d: loss %.4f", len(epoch_losses), epoch_losses[-1])
    fitted = bag.weight.detach().numpy().copy()
    report = StaticTrainReport(
        epoch_losses=tuple(epoch_losses),
        eval_cosine_before=eval_before,
        eval_cosine_mapped=eval_mapped,
        eval_cosine_after=mean_cosine(fitted, eval_flat, eval_offsets, eval_targets) if len(eval_texts) else None,
        train_cosine_before=train_before,
        train_cosine_mapped=train_mapped,
        train_cosine_after=mean_cosine(fitted, flat, offsets, targets) if len(texts) else None,
        seconds=time.perf_counter() - started,
        steps=total_steps if config.epochs else 0,
        texts=len(texts),
        tokens=int(len(flat)),
        rows_trained=int(np.unique(flat).size),
        vocab_size=int(table.shape[0]),
        optimizer=config.optimizer,
        init_map=config.init_map,
    )
    return fitted, report


def _gather(
    flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The flat ids and offsets of the texts `batch` (indices into the tokenised texts), in that order."""
    batch_lengths = lengths[batch]
    batch_offsets = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(batch_lengths[:-1], out=batch_offsets[1:])
    positions = np.repeat(offsets[batch] - batch_offsets, batch_lengths) + np.arange(int(batch_lengths.sum()))
    return flat[positions], batch_offsets
