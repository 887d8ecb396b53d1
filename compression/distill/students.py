"""Building students: the teacher with some of its layers kept (`select_layers`, `prune_layers`), or a model loaded
as it is, plus a least-squares-initialised linear projection into the teacher's dim (`fit_projection`,
`attach_projection`).

torch and sentence-transformers are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compression.distill.config import DistillConfig, parse_student
from compression.models import resolve_model
from semsearch_common.errors import MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PROJECTION_RIDGE = 1e-3  # ridge strength, relative to the mean diagonal of X^T X: keeps the fit stable when n < dim


def select_layers(total: int, keep: int) -> list[int]:
    """Indices of `keep` of `total` transformer layers, evenly spaced, always including the first and the last.

    12 -> 6 gives [0, 2, 4, 7, 9, 11], 12 -> 4 gives [0, 4, 7, 11], 12 -> 3 gives [0, 6, 11] (keep=1 gives [0]).
    The last layer's output is what the teacher's pooling was trained on; the first stays next to the embeddings.

    Measured before any training (all-mpnet-base-v2, 29 hand-written sentences, max_seq_length 128; mean cosine to
    the full teacher / correlation of pairwise similarities with the teacher's):
    6 layers: [0, 2, 4, 7, 9, 11] 0.53 / 0.67, best of the three tried; [0, 2, 4, 6, 8, 10] (DistilBERT's choice)
    0.44 / 0.59; [1, 3, 5, 7, 9, 11] 0.45 / 0.55.
    4 layers: [0, 4, 7, 11] 0.18 / 0.37 is beaten by [2, 5, 8, 11] 0.29 / 0.47 ([1, 4, 7, 10]: 0.23 / 0.39).
    So the rule is kept for its clear 6-layer win; for 4 layers or fewer, try `teacher-layers:2,5,8,11` too.
    These are untrained starting points; which choice ends best after distillation has not been measured.
    """
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers: use 1 <= N <= {total}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def _encoder_layers(model: SentenceTransformer) -> tuple[Any, Any]:
    """The transformers model's config and its encoder's layer list (BERT, MPNet, RoBERTa, ... keep them in
    `encoder.layer`)."""
    hf_model = model[0].auto_model
    encoder = getattr(hf_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ValueError(
            f"cannot prune layers of {type(hf_model).__name__}: supported are models with encoder.layer "
            "(BERT, MPNet, RoBERTa, XLM-R)"
        )
    return hf_model.config, encoder


def prune_layers(model: SentenceTransformer, keep: int | Sequence[int]) -> list[int]:
    """Keep `keep` evenly spaced transformer layers of `model` in place (see `select_layers`), or exactly the listed
    0-based layers; return the kept indices.

    The layers are removed structurally and `config.num_hidden_layers` updated, so the model saves and loads as a
    normal, smaller transformers model.
    """
    import torch

    config, encoder = _encoder_layers(model)
    total = len(encoder.layer)
    if isinstance(keep, int):
        kept = select_layers(total, keep)
    else:
        kept = list(keep)
        if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= total:
            raise ValueError(f"cannot keep layers {kept} of {total}: list distinct indices 0..{total - 1} in order")
    encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in kept])
    config.num_hidden_layers = len(kept)
    for position, layer in enumerate(encoder.layer):  # keep any per-layer index consistent with the new order
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    logger.info("kept layers %s of %d", kept, total)
    return kept


EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def freeze_embeddings(model: SentenceTransformer) -> list[str]:
    """Stop gradients to the transformer's embedding tables (token, position, token type) in place; return the
    names of the frozen parameters. Their values, and so the saved model's, are left as they are."""
    hf_model = model[0].auto_model
    embeddings = getattr(hf_model, "embeddings", None)
    frozen: list[str] = []
    for table in EMBEDDING_TABLES:
        module = getattr(embeddings, table, None)
        if module is None:
            continue
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(False)
            frozen.append(f"embeddings.{table}.{name}")
    if not frozen:
        raise ValueError(f"{type(hf_model).__name__} has no embeddings.word_embeddings to freeze")
    return frozen


def set_dropout(model: SentenceTransformer, enabled: bool) -> int:
    """Turn every dropout layer of `model` off (p = 0) or leave it as it is; return how many were turned off."""
    import torch

    if enabled:
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p:
            module.p = 0.0
            count += 1
    return count


def _load_sentence_transformer(path: Path, device: str) -> SentenceTransformer:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - core dependency
        raise MissingDependencyError("distillation needs `pip install torch==2.13.0 sentence-transformers`") from err
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def pooled_embeddings(model: SentenceTransformer, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """The model's float32 vectors of `texts` as its modules give them (not re-normalised), without gradients."""
    return model.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False
    ).astype(np.float32)


def fit_projection(
    inputs: np.ndarray, targets: np.ndarray, ridge: float = PROJECTION_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares (lightly ridge-regularised) W, b minimising ||inputs @ W + b - targets||; return (W^T, b) in the
    (out, in) / (out,) layout of `torch.nn.Linear`."""
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} inputs but {y.shape[0]} targets")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    strength = ridge * max(float(np.trace(gram)) / gram.shape[0], 1e-12)
    weight = np.linalg.solve(gram + strength * np.eye(gram.shape[0]), xc.T @ yc)  # (in, out)
    bias = y_mean - x_mean @ weight
    return weight.T.astype(np.float32), bias.astype(np.float32)


def attach_projection(
    model: SentenceTransformer, out_dim: int, fit_texts: Sequence[str], fit_targets: np.ndarray, device: str = "cpu"
) -> SentenceTransformer:
    """Return Transformer -> Pooling -> ... -> Dense(dim, out_dim, identity) -> Normalize, the Dense initialised by
    least squares from the student's un-normalised vectors of `fit_texts` to `fit_targets`.

    A trailing Normalize of `model` is dropped first, so the chain stays exportable to ONNX (Normalize only last).
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    modules = list(model)
    if isinstance(modules[-1], Normalize):
        modules = modules[:-1]
    body = SentenceTransformer(modules=modules, device=device)
    body.max_seq_length = model.max_seq_length
    in_dim = int(body.get_embedding_dimension())
    if len(fit_texts) < 2:
        raise ValueError("fitting the projection needs at least 2 texts")
    weight, bias = fit_projection(pooled_embeddings(body, fit_texts), fit_targets)
    dense = Dense(
        in_dim,
        out_dim,
        activation_function=torch.nn.Identity(),
        init_weight=torch.from_numpy(weight),
        init_bias=torch.from_numpy(bias),
    )
    student = SentenceTransformer(modules=[*modules, dense, Normalize()], device=device)
    student.max_seq_length = model.max_seq_length
    logger.info("added a least-squares projection %d -> %d fitted on %d texts", in_dim, out_dim, len(fit_texts))
    return student


@dataclass
class Student:
    """A student ready to train, and how it was made."""

    model: SentenceTransformer
    kept_layers: list[int] | None = None
    projection_added: bool = False
    inference_max_seq_length: int | None = None  # the base model's own length, restored before saving


def build_student(
    config: DistillConfig,
    teacher_dim: int,
    fit_texts: Sequence[str] = (),
    fit_targets: np.ndarray | None = None,
    device: str = "cpu",
) -> Student:
    """Load or derive the student of `config`, truncated to `config.max_seq_length`.

    `minilm` and folders are loaded as they are; `teacher-layers:N` loads `config.teacher` and prunes it to N layers,
    `minilm-layers:N` does the same to all-MiniLM-L6-v2; a `@ffn=N` suffix then prunes every kept layer's FFN
    (see `compression.distill.pruning`).
    With `projection="auto"`, a student whose dim differs from `teacher_dim` gets a linear projection to it,
    least-squares fitted from the student's vectors of `fit_texts` to `fit_targets` (the teacher's vectors of the
    same texts: training texts only, never test queries).
    """
    from compression.distill.config import parse_pruning
    from compression.distill.pruning import apply_pruning

    kind, argument = parse_student(config.student)
    kept: list[int] | None = None
    if kind in ("teacher-layers", "minilm-layers"):
        base = config.teacher if kind == "teacher-layers" else "minilm"
        model = _load_sentence_transformer(resolve_model(base).path, device)
        kept = prune_layers(model, argument)
    else:
        model = _load_sentence_transformer(resolve_model(str(argument)).path, device)
    apply_pruning(model, parse_pruning(config.student)[1])  # `@ffn=N`: None for folders and unsuffixed specs
    inference_length = int(model.max_seq_length or config.max_seq_length)
    model.max_seq_length = min(inference_length, config.max_seq_length)
    student_dim = int(model.get_embedding_dimension())
    if student_dim == teacher_dim:
        return Student(model, kept, False, inference_length)
    if config.projection == "never":
        if "mse" in config.loss:
            raise ValueError(
                f"student dim {student_dim} != teacher dim {teacher_dim}: the {config.loss!r} loss compares vectors, "
                "so use projection='auto' (adds a projection) or loss 'kl' or 'rank'"
            )
        return Student(model, kept, False, inference_length)
    if fit_targets is None or len(fit_texts) != len(fit_targets):
        raise ValueError("a student of another dim than the teacher needs fit_texts and their teacher fit_targets")
    projected = attach_projection(model, teacher_dim, fit_texts, fit_targets, device)
    return Student(projected, kept, True, inference_length)
