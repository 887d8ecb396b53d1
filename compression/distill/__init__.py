"""Distil the teacher's embedding space into a smaller student: build the student, cache teacher targets, train, save.

The pieces are separate so each can be tested and timed on its own:

- `DistillConfig`: the declarative, validated description of a run (stored as `distill_config.json`).
- `build_student`: `minilm` (all-MiniLM-L6-v2 plus a least-squares-initialised linear projection 384 -> 768),
  `teacher-layers:N` (the teacher with N of its transformer layers kept, see `select_layers`), or a local folder.
- `compute_teacher_targets`: the teacher's unit vectors for a list of texts, cached on disk and resumable.
- `mse_loss`, `similarity_kl_loss`, `distillation_loss`: small pure torch functions.
- `train_student`: a plain torch loop (AdamW, linear warmup then linear decay), seeded.
- `save_student`: a standard sentence-transformers folder, published atomically (staging folder, then rename).
- `distill`: all of the above in order.

Every function here takes plain lists of texts and never looks at a dataset: choosing the training texts (and keeping
evaluation queries out of them) is the caller's job; see `search.data.training_texts.training_texts`, which uses corpus text
and *train* queries only. Never pass test queries as training or projection-fitting texts.

torch and sentence-transformers are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import numpy as np

from common.atomic import save_array_atomic, staged_folder, write_json_atomic
from common.cache import cache_root
from common.progress import make_progress
from compression.encoders import l2_normalise
from compression.models import resolve_model

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

LossName = Literal["mse", "kl", "mse+kl", "rank", "mse+rank"]
ProjectionMode = Literal["auto", "never"]
BatchingMode = Literal["random", "neighbours"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
PROJECTION_MODES: tuple[str, ...] = get_args(ProjectionMode)
BATCHING_MODES: tuple[str, ...] = get_args(BatchingMode)
STUDENT_NAMES = ("minilm", "teacher-layers:N", "teacher-layers:i,j,...", "a local sentence-transformers folder")
TEACHER_LAYERS_PREFIX = "teacher-layers:"
CONFIG_FILE = "distill_config.json"
REPORT_FILE = "distill_report.json"
TARGETS_DIR = "distill-targets"
TARGETS_CHECKPOINT_SECONDS = 60.0
TARGETS_CHUNK = 512
PROJECTION_RIDGE = 1e-3  # ridge strength, relative to the mean diagonal of X^T X: keeps the fit stable when n < dim


@dataclass(frozen=True)
class DistillConfig:
    """What to distil into what, and how.

    student: `minilm`, `teacher-layers:N` (keep N evenly spaced layers of the teacher, see `select_layers`),
        `teacher-layers:i,j,...` (keep those 0-based layers) or a sentence-transformers folder.
    teacher: the model whose vectors the student learns to reproduce: `teacher`, `minilm` or a folder.
    loss: `mse` (squared distance to the teacher vector), `kl` (match the teacher's in-batch similarity
        distributions), `mse+kl` (mse + kl_weight * kl), `rank` (match the teacher's similarity distribution over a
        fixed document set, the corpus: see `ranking_kl_loss`) or `mse+rank`.
    kl_weight: weight of the KL (or rank) term in `mse+kl` (`mse+rank`).
    temperature: softmax temperature of the KL term (cosine similarities are divided by it).
    epochs, learning_rate, batch_size, warmup_ratio, weight_decay, max_grad_norm: the optimiser schedule: AdamW,
        linear warmup over warmup_ratio of the steps, then linear decay to zero; gradients clipped to max_grad_norm.
    max_seq_length: truncation of the student, and of the teacher when computing targets (part of the cache key).
    max_texts: use at most this many of the given texts (the first ones: pass them shuffled); None for all.
    seed: seeds torch and the batch order.
    projection: output dim behaviour. `auto` appends a trainable linear Dense projection student_dim -> teacher_dim
        (least-squares initialised, then Normalize) when the dims differ, so the student's vectors live in the
        teacher's space; `never` keeps the student's own dim, which only the `kl` loss can train.
    projection_fit_texts: how many of the training texts the least-squares initialisation of the projection uses.
    label_boost: with a `rank` loss, added to the teacher's logit of each judged-relevant document of a training
        text that is a *train* query (see `distill(positives=...)`); 0 uses the teacher alone.
    length_grouping: sort texts by length within windows of 16 batches before cutting batches (batch order stays
        random), so a batch pads to similar lengths: same texts, about half the compute on CPU.
    batching: `random` batches, or `neighbours`: each epoch the texts are k-means clustered on their teacher vectors
        and batches are filled cluster by cluster, so the KL term compares texts the teacher finds close (the fine
        distinctions ranking depends on) rather than mostly unrelated ones.
    """

    student: str = "minilm"
    teacher: str = "teacher"
    loss: LossName = "mse"
    kl_weight: float = 1.0
    temperature: float = 0.05
    epochs: int = 1
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_seq_length: int = 128
    max_texts: int | None = None
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    projection: ProjectionMode = "auto"
    projection_fit_texts: int = 2048
    batching: BatchingMode = "random"
    length_grouping: bool = True
    label_boost: float = 0.0

    def __post_init__(self) -> None:
        parse_student(self.student)
        if self.batching not in BATCHING_MODES:
            raise ValueError(f"unknown batching {self.batching!r}: use one of {', '.join(BATCHING_MODES)}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSS_NAMES)}")
        if self.projection not in PROJECTION_MODES:
            raise ValueError(f"unknown projection {self.projection!r}: use one of {', '.join(PROJECTION_MODES)}")
        positive = {"temperature": self.temperature, "learning_rate": self.learning_rate}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        at_least = {
            "epochs": (self.epochs, 1),
            "batch_size": (self.batch_size, 2),
            "max_seq_length": (self.max_seq_length, 8),
            "projection_fit_texts": (self.projection_fit_texts, 1),
        }
        if self.max_texts is not None:
            at_least["max_texts"] = (self.max_texts, 2)
        for name, (value, low) in at_least.items():
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name, value in {"kl_weight": self.kl_weight, "weight_decay": self.weight_decay}.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown distill config keys {unknown}: use {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)


def parse_student(spec: str) -> tuple[Literal["minilm", "teacher-layers", "folder"], Any]:
    """Split a student spec into its kind and argument: ("minilm", "minilm"), ("teacher-layers", N),
    ("teacher-layers", [i, j, ...]) for explicit 0-based layer indices, or ("folder", path); raise ValueError listing
    the allowed forms."""
    if spec == "minilm":
        return "minilm", spec
    if spec.startswith(TEACHER_LAYERS_PREFIX):
        argument = spec[len(TEACHER_LAYERS_PREFIX) :]
        parts = argument.split(",")
        if not argument or not all(part.strip().isdigit() for part in parts):
            raise ValueError(
                f"bad student {spec!r}: use teacher-layers:N (N evenly spaced layers, N >= 1) or "
                "teacher-layers:i,j,... (those 0-based layers)"
            )
        if len(parts) == 1:
            if int(argument) < 1:
                raise ValueError(f"bad student {spec!r}: use teacher-layers:N with N >= 1")
            return "teacher-layers", int(argument)
        indices = [int(part) for part in parts]
        if indices != sorted(set(indices)):
            raise ValueError(f"bad student {spec!r}: list the layers in increasing order, each once")
        return "teacher-layers", indices
    if Path(spec).expanduser().is_dir():
        return "folder", spec
    raise ValueError(f"unknown student {spec!r}: use one of {', '.join(STUDENT_NAMES)}")


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


# ---------------------------------------------------------------------------------------------------------- losses


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over texts of the squared Euclidean distance between student and teacher vectors.

    For unit vectors this is 2 - 2 cos. It is `dim` times torch's element-wise MSE, which keeps it on the scale of
    the KL term whatever the embedding dimension (the element-wise mean of 768 dims is ~1e-4 and would need a tiny
    kl_weight). Pass normalised vectors; `distillation_loss` does.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student vectors {tuple(student.shape)} and teacher vectors {tuple(teacher.shape)} differ")
    return (student - teacher).pow(2).sum(dim=-1).mean()


def similarity_kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """KL(teacher || student) between in-batch similarity distributions, averaged over the texts of the batch.

    For each text i, p_i = softmax_j(cos(t_i, t_j) / temperature) over the other texts j != i of the batch (the
    diagonal is left out: every text is most similar to itself), likewise q_i from the student's vectors; the loss is
    mean_i KL(p_i || q_i). It is 0 whenever the student's similarity structure equals the teacher's (any rotation of
    the teacher's vectors, for instance), and the student's dim need not equal the teacher's. Batches of fewer than 2
    texts have no other texts to compare with and give 0.
    """
    import torch
    import torch.nn.functional as F

    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} vectors, teacher {teacher.shape[0]}: they must match")
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0.0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=student.device)

    def log_probs(vectors: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(vectors, p=2, dim=-1)
        similarities = (unit @ unit.T)[off_diagonal].view(n, n - 1) / temperature
        return F.log_softmax(similarities, dim=-1)

    return F.kl_div(log_probs(student), log_probs(teacher.to(student.dtype)), log_target=True, reduction="batchmean")


def ranking_kl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_documents: torch.Tensor,
    teacher_documents: torch.Tensor,
    temperature: float = 0.05,
    teacher_boost: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) between each text's similarity distributions over a fixed set of documents.

    p_i = softmax_d(cos(t_i, T_d) / temperature) over the teacher's document vectors T, q_i likewise from the
    student's vector s_i against `student_documents` S (the teacher's own vectors in the asymmetric mode, or a frozen
    student document tower). Unlike the in-batch `similarity_kl_loss`, every text is ranked against the whole corpus,
    which is the distribution search actually samples from: the student learns which documents the teacher puts on
    top for that text, and in which order. `teacher_boost` (texts x documents) is added to the teacher's logits:
    judged-relevant documents of train queries get `label_boost` there, mixing hard labels into the soft ones
    (Hinton et al.'s distillation with true labels). Pass unit vectors.
    """
    import torch.nn.functional as F

    if student_documents.shape[0] != teacher_documents.shape[0]:
        raise ValueError(
            f"{student_documents.shape[0]} student documents but {teacher_documents.shape[0]} teacher documents"
        )
    teacher_logits = teacher.to(teacher_documents.dtype) @ teacher_documents.T / temperature
    if teacher_boost is not None:
        teacher_logits = teacher_logits + teacher_boost.to(teacher_logits.dtype)
    student_logits = student @ student_documents.to(student.dtype).T / temperature
    return F.kl_div(
        F.log_softmax(student_logits, dim=-1),
        F.log_softmax(teacher_logits.to(student.dtype), dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    loss: LossName = "mse",
    kl_weight: float = 1.0,
    temperature: float = 0.05,
    documents: tuple[torch.Tensor, torch.Tensor] | None = None,
    teacher_boost: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training objective on L2-normalised vectors: `mse`, `kl`, `mse+kl` = mse + kl_weight * kl, `rank`, or
    `mse+rank` = mse + kl_weight * rank; the rank terms need `documents` = (student's, teacher's) document vectors."""
    import torch.nn.functional as F

    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSS_NAMES)}")
    student = F.normalize(student, p=2, dim=-1)
    teacher = F.normalize(teacher.to(student.dtype), p=2, dim=-1)
    if loss == "mse":
        return mse_loss(student, teacher)
    if loss == "kl":
        return similarity_kl_loss(student, teacher, temperature)
    if loss == "mse+kl":
        return mse_loss(student, teacher) + kl_weight * similarity_kl_loss(student, teacher, temperature)
    if documents is None:
        raise ValueError(f"the {loss!r} loss ranks against a document set: pass documents=(student's, teacher's)")
    rank = ranking_kl_loss(student, teacher, documents[0], documents[1], temperature, teacher_boost)
    return rank if loss == "rank" else mse_loss(student, teacher) + kl_weight * rank


# ------------------------------------------------------------------------------------------------- teacher targets


class TeacherEncoder(Protocol):
    """What `compute_teacher_targets` needs of a teacher: an `Encoder` satisfies it."""

    def encode(
        self, texts: Sequence[str], kind: Literal["query", "passage"] = ..., batch_size: int = ...
    ) -> np.ndarray:
        """Unit vectors, one row per text."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies the vector space (cache key)."""
        ...


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A content hash of a list of texts, in order (length-prefixed, so no two lists collide by concatenation)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def targets_cache_key(identity: dict[str, Any], texts_hash: str, max_seq_length: int) -> str:
    """Hash of the teacher identity (without its location), the texts and the truncation."""
    location_free = {k: v for k, v in identity.items() if k != "path"}
    payload = {"teacher": location_free, "texts": texts_hash, "max_seq_length": max_seq_length, "kind": "passage"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


@contextmanager
def _truncated(teacher: Any, max_seq_length: int) -> Iterator[None]:
    """Temporarily truncate an encoder that wraps a sentence-transformers model (`SentenceTransformerEncoder` keeps
    it in `_model`) to at most `max_seq_length` tokens, so teacher and student see the same text; other encoders
    (the fake one) have no truncation to set."""
    model = getattr(teacher, "_model", None)
    previous = getattr(model, "max_seq_length", None)
    if model is None or previous is None:
        yield
        return
    model.max_seq_length = min(int(previous), max_seq_length)
    try:
        yield
    finally:
        model.max_seq_length = previous


def compute_teacher_targets(
    teacher: TeacherEncoder,
    texts: Sequence[str],
    max_seq_length: int,
    batch_size: int = 32,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
) -> tuple[np.ndarray, bool]:
    """Return (the teacher's unit vectors for `texts` as passages, whether they came from the cache).

    Cached under `cache_root()/distill-targets/<key>.npy`, keyed by the teacher identity, the texts and
    `max_seq_length`. Encoding runs in chunks with a checkpoint every minute, so an interrupted run resumes.
    """
    texts = list(texts)
    key = targets_cache_key(teacher.identity(), texts_fingerprint(texts), max_seq_length)
    folder = (cache_dir or cache_root()) / TARGETS_DIR
    vectors_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    partial_path, partial_meta = folder / f"{key}.partial.npy", folder / f"{key}.partial.json"
    if use_cache and vectors_path.exists() and meta_path.exists():
        vectors = np.load(vectors_path, allow_pickle=False)
        if vectors.ndim == 2 and vectors.shape[0] == len(texts):
            logger.info("reusing cached teacher targets %s (%d x %d)", key, *vectors.shape)
            return vectors, True
        logger.warning(
            "cached teacher targets %s have shape %s, expected %d rows; recomputing", key, vectors.shape, len(texts)
        )
    vectors: np.ndarray | None = None
    done = 0
    if use_cache and partial_path.exists() and partial_meta.exists():
        partial = np.load(partial_path, allow_pickle=False)
        state = json.loads(partial_meta.read_text())
        if partial.ndim == 2 and partial.shape[0] == len(texts):
            vectors, done = partial, int(state["done"])
            logger.info("resuming teacher targets at %d/%d", done, len(texts))
    started = last_checkpoint = time.perf_counter()
    with _truncated(teacher, max_seq_length), make_progress(show_progress) as progress:
        task = progress.add_task("teacher targets", total=len(texts), completed=done, info="")
        while done < len(texts):
            chunk = texts[done : done + TARGETS_CHUNK]
            encoded = l2_normalise(teacher.encode(chunk, kind="passage", batch_size=batch_size))
            if vectors is None:
                vectors = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
            vectors[done : done + len(chunk)] = encoded
            done += len(chunk)
            progress.update(task, completed=done, info=f"{done / (time.perf_counter() - started):.1f} texts/s")
            if use_cache and done < len(texts) and time.perf_counter() - last_checkpoint > TARGETS_CHECKPOINT_SECONDS:
                save_array_atomic(partial_path, vectors)
                write_json_atomic(partial_meta, {"done": done})
                last_checkpoint = time.perf_counter()
    if vectors is None:
        raise ValueError("no texts to compute teacher targets for")
    if use_cache:
        save_array_atomic(vectors_path, vectors)
        write_json_atomic(
            meta_path,
            {
                "n": len(texts),
                "dim": int(vectors.shape[1]),
                "max_seq_length": max_seq_length,
                "teacher": teacher.identity(),
                "seconds": time.perf_counter() - started,
            },
        )
        partial_path.unlink(missing_ok=True)
        partial_meta.unlink(missing_ok=True)
    return vectors, False


# -------------------------------------------------------------------------------------------------------- students


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


def _load_sentence_transformer(path: Path, device: str) -> SentenceTransformer:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - core dependency
        raise ImportError("distillation needs `pip install torch==2.13.0 sentence-transformers`") from err
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def _pooled_embeddings(model: SentenceTransformer, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
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
    weight, bias = fit_projection(_pooled_embeddings(body, fit_texts), fit_targets)
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

    `minilm` and folders are loaded as they are; `teacher-layers:N` loads `config.teacher` and prunes it to N layers.
    With `projection="auto"`, a student whose dim differs from `teacher_dim` gets a linear projection to it,
    least-squares fitted from the student's vectors of `fit_texts` to `fit_targets` (the teacher's vectors of the
    same texts: training texts only, never test queries).
    """
    kind, argument = parse_student(config.student)
    kept: list[int] | None = None
    if kind == "teacher-layers":
        model = _load_sentence_transformer(resolve_model(config.teacher).path, device)
        kept = prune_layers(model, argument)
    else:
        model = _load_sentence_transformer(resolve_model(str(argument)).path, device)
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


# -------------------------------------------------------------------------------------------------------- training


def _batches(order: np.ndarray, batch_size: int, min_size: int) -> list[np.ndarray]:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batch for batch in batches if len(batch) >= min_size]


LENGTH_GROUP_BATCHES = 16


def length_grouped(order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Reorder `order` so each run of `batch_size` holds texts of similar length: windows of LENGTH_GROUP_BATCHES
    batches are sorted by length and cut into batches, then the batches are shuffled. Padding is per batch, so this
    roughly halves the compute of a batch of mixed sentences and passages."""
    window = batch_size * LENGTH_GROUP_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) != batch_size]
    shuffled = [full[i] for i in rng.permutation(len(full))]
    return np.concatenate(shuffled + partial) if shuffled or partial else order


def neighbour_order(targets: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the rows of `targets` in which consecutive runs of about `batch_size` rows are k-means
    neighbours: clusters (about one per batch) in random order, members shuffled within each cluster."""
    n = len(targets)
    clusters = max(1, n // batch_size)
    if clusters == 1:
        return rng.permutation(n)
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - core dependency
        raise ImportError("neighbour batching needs `pip install faiss-cpu`") from err
    data = np.ascontiguousarray(targets, dtype=np.float32)
    kmeans = faiss.Kmeans(data.shape[1], clusters, niter=10, seed=int(rng.integers(2**31 - 1)), spherical=True)
    kmeans.cp.min_points_per_centroid = 1
    kmeans.train(data)
    _, assignment = kmeans.index.search(data, 1)
    assignment = assignment.ravel()
    order = [rng.permutation(np.flatnonzero(assignment == c)) for c in rng.permutation(clusters)]
    return np.concatenate([members for members in order if len(members)])


def _to_device(features: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def embed_for_training(model: SentenceTransformer, texts: Sequence[str], device: str) -> torch.Tensor:
    """The student's sentence embeddings of `texts`, with gradients (forward pass of one training batch)."""
    features = _to_device(model.preprocess(list(texts)), device)
    return model(features)["sentence_embedding"]


def train_student(
    model: SentenceTransformer,
    texts: Sequence[str],
    targets: np.ndarray,
    config: DistillConfig,
    device: str = "cpu",
    show_progress: bool = True,
    documents: tuple[np.ndarray, np.ndarray] | None = None,
    positives: Sequence[Sequence[int]] | None = None,
) -> tuple[list[float], int, float]:
    """Train `model` in place to reproduce `targets` (the teacher's vectors of `texts`); return (mean loss per epoch,
    optimiser steps, seconds).

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
    steps_per_epoch = len(_batches(np.arange(len(texts)), config.batch_size, min_batch))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(texts)} texts make no training batch: give at least {min_batch}")
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_ratio * total_steps))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    model.to(device)
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    target_tensor = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    epoch_losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    try:
        with make_progress(show_progress) as progress:
            task = progress.add_task("distilling", total=total_steps, info="")
            for epoch in range(1, config.epochs + 1):
                losses: list[float] = []
                if config.batching == "neighbours":
                    order = neighbour_order(targets, config.batch_size, rng)
                else:
                    order = rng.permutation(len(texts))
                    if config.length_grouping:
                        order = length_grouped(order, lengths, config.batch_size, rng)
                for batch in _batches(order, config.batch_size, min_batch):
                    student = embed_for_training(model, [texts[i] for i in batch], device)
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
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    steps += 1
                    losses.append(float(loss.detach()))
                    progress.update(
                        task, advance=1, info=f"epoch {epoch}/{config.epochs} loss {sum(losses) / len(losses):.4f}"
                    )
                epoch_losses.append(sum(losses) / len(losses))
                logger.info(
                    "epoch %d/%d: mean loss %.6f over %d steps", epoch, config.epochs, epoch_losses[-1], len(losses)
                )
    finally:
        model.eval()
    return epoch_losses, steps, time.perf_counter() - started


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


def mean_cosine(model: SentenceTransformer, texts: Sequence[str], targets: np.ndarray, batch_size: int = 32) -> float:
    """Mean cosine between the model's vectors of `texts` and `targets` (same dim): how close student is to teacher."""
    vectors = l2_normalise(_pooled_embeddings(model, texts, batch_size))
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
    vectors = l2_normalise(_pooled_embeddings(model, texts))
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
) -> DistillReport:
    """Distil `config.teacher` (or the given `teacher` encoder) into `config.student` on `texts`; save to `out_dir`.

    The `rank` losses rank every text against a fixed document set: `teacher_documents` (the teacher's unit vectors
    of the corpus) on the teacher side and, on the student side, `student_documents` (a frozen document tower, e.g.
    the base student's corpus vectors) or, when not given, the teacher's documents themselves (asymmetric mode: the
    student must then share the teacher's dim). `positives[i]` (rows of the document set judged relevant to
    texts[i]; train queries only, never test queries) adds `config.label_boost` to those documents' teacher logits.
    `targets` are the teacher's vectors of `texts` when the caller has them (e.g. from two cached parts).
    The report then also gives the held-out top-10 overlap of the
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
            teacher, texts, config.max_seq_length, config.batch_size, cache_dir, show_progress=show_progress
        )
    targets_seconds = time.perf_counter() - started
    eval_targets = None
    if eval_texts:
        eval_targets, _ = compute_teacher_targets(
            teacher, eval_texts, config.max_seq_length, config.batch_size, cache_dir, show_progress=False
        )
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
        student.model, texts, targets, config, device, show_progress, documents=documents, positives=positives
    )
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
