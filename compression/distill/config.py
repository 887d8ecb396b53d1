"""What a distillation run is: `DistillConfig` (whose defaults are the shipped recipe), its allowed names, and
`parse_student`, which reads a student spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from compression.precision import PRECISION_NAMES, Precision

LossName = Literal["mse", "kl", "mse+kl", "rank", "mse+rank"]
ProjectionMode = Literal["auto", "never"]
BatchingMode = Literal["random", "neighbours"]
Curriculum = Literal["mixed", "corpus-first", "queries-first"]
StudentKind = Literal["minilm", "teacher-layers", "minilm-layers", "folder"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
PROJECTION_MODES: tuple[str, ...] = get_args(ProjectionMode)
BATCHING_MODES: tuple[str, ...] = get_args(BatchingMode)
CURRICULA: tuple[str, ...] = get_args(Curriculum)
STUDENT_NAMES = (
    "minilm",
    "teacher-layers:N",
    "teacher-layers:i,j,...",
    "minilm-layers:N",
    "minilm-layers:i,j,...",
    "any of those with @ffn=N (keep N FFN neurons per layer)",
    "a local sentence-transformers folder",
)
TEACHER_LAYERS_PREFIX = "teacher-layers:"
MINILM_LAYERS_PREFIX = "minilm-layers:"
LAYER_PREFIXES = {TEACHER_LAYERS_PREFIX: "teacher-layers", MINILM_LAYERS_PREFIX: "minilm-layers"}
CONFIG_FILE = "distill_config.json"
REPORT_FILE = "distill_report.json"


@dataclass(frozen=True)
class DistillConfig:
    """What to distil into what, and how. The defaults ARE the shipped recipe (`DistillConfig()`): the CLI and the
    main job read them from here; see benchmarks/compression/README.md for the measured alternatives.

    student: `minilm`, `teacher-layers:N` (keep N evenly spaced layers of the teacher, see `select_layers`),
        `teacher-layers:i,j,...` (keep those 0-based layers), `minilm-layers:...` (the same for all-MiniLM-L6-v2)
        or a sentence-transformers folder. `minilm` and layer specs take a suffix `@ffn=N`: keep the N most
        important FFN neurons of every kept layer (see `compression.distill.pruning`).
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
        teacher's space; `never` keeps the student's own dim, which only the `kl` and `rank` losses can train
        (`rank` against a frozen document tower of the student's own corpus vectors).
    projection_fit_texts: how many of the training texts the least-squares initialisation of the projection uses.
    precision: `fp32`, `bf16` (torch autocast for the teacher's targets and the student's training; fp32 master
        weights) or `auto`: bf16 on a GPU or a CPU with native bf16 (AVX512-BF16/AMX), else fp32. On this project's
        CPU bf16 encodes 1.9x faster with a mean cosine of 0.99998 to fp32 targets.
    label_boost: with a `rank` loss, added to the teacher's logit of each judged-relevant document of a training
        text that is a *train* query (see `distill(positives=...)`); 0 uses the teacher alone.
    length_grouping: sort texts by length within windows of 16 batches before cutting batches (batch order stays
        random), so a batch pads to similar lengths: same texts, about half the compute on CPU.
    freeze_embeddings: keep the token, position and token-type embedding tables as the base model has them (the
        teacher's, for a slice): no gradient, no optimiser state, no update for the largest matrices of a small
        student; they stay bit-identical through training.
    dropout: train with the base model's dropout (True) or with every dropout layer off (False): the student
        regresses onto fixed targets, so the noise buys no regularisation the data volume does not.
    curriculum: `mixed` (every text in every epoch, shuffled together), `corpus-first` (all epochs over corpus text,
        then all epochs over query-like texts: pseudo-queries and train queries) or `queries-first` (the reverse).
    second_stage_lr: a curriculum's second stage trains at this times the scheduled learning rate.
    batching: `random` batches, or `neighbours`: each epoch the texts are k-means clustered on their teacher vectors
        and batches are filled cluster by cluster, so the KL term compares texts the teacher finds close (the fine
        distinctions ranking depends on) rather than mostly unrelated ones.
    """

    student: str = "teacher-layers:0,11"
    teacher: str = "teacher"
    loss: LossName = "mse+rank"
    kl_weight: float = 1.0
    temperature: float = 0.05
    epochs: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_seq_length: int = 32
    max_texts: int | None = None
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    projection: ProjectionMode = "auto"
    projection_fit_texts: int = 2048
    batching: BatchingMode = "random"
    length_grouping: bool = True
    label_boost: float = 3.0
    precision: Precision = "auto"
    freeze_embeddings: bool = True
    dropout: bool = False
    curriculum: Curriculum = "mixed"
    second_stage_lr: float = 0.5

    def __post_init__(self) -> None:
        parse_student(self.student)
        if self.batching not in BATCHING_MODES:
            raise ValueError(f"unknown batching {self.batching!r}: use one of {', '.join(BATCHING_MODES)}")
        if self.curriculum not in CURRICULA:
            raise ValueError(f"unknown curriculum {self.curriculum!r}: use one of {', '.join(CURRICULA)}")
        if not 0 < self.second_stage_lr <= 10:
            raise ValueError(f"second_stage_lr must be in (0, 10], got {self.second_stage_lr}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.loss!r}: use one of {', '.join(LOSS_NAMES)}")
        if self.precision not in PRECISION_NAMES:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISION_NAMES)}")
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


PRUNING_FORM = "SPEC@ffn=N,heads=H (either or both; N, H positive integers; SPEC minilm or *-layers:...)"
PRUNING_KEYS = ("ffn", "heads")


@dataclass(frozen=True)
class PruningSpec:
    """What to keep in every transformer layer: the `ffn` most important FFN neurons, the `heads` most important
    attention heads (None keeps all)."""

    ffn: int | None = None
    heads: int | None = None


def parse_pruning(spec: str) -> tuple[str, PruningSpec | None]:
    """Split `SPEC@ffn=N,heads=H` into (SPEC, PruningSpec); a spec without a suffix, or whose base is not `minilm`
    or a `*-layers:` spec (a folder name may hold an `@`), comes back as (spec, None). Raise ValueError naming the
    allowed form on a bad suffix."""
    base, at, suffix = spec.rpartition("@")
    if not at or not (base == "minilm" or base.startswith(tuple(LAYER_PREFIXES))):
        return spec, None
    values: dict[str, int] = {}
    for part in suffix.split(","):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or key not in PRUNING_KEYS or key in values or not value.isdigit() or int(value) < 1:
            raise ValueError(f"bad pruning suffix {'@' + suffix!r} in {spec!r}: use {PRUNING_FORM}")
        values[key] = int(value)
    return base, PruningSpec(**values)


def parse_student(spec: str) -> tuple[StudentKind, Any]:
    """Split a student spec into its kind and argument: ("minilm", "minilm"), ("teacher-layers", N),
    ("teacher-layers", [i, j, ...]) for explicit 0-based layer indices (`teacher-layers:11,` keeps layer 11 alone),
    the same for `minilm-layers`, or ("folder", path); raise ValueError listing the allowed forms.

    A `@ffn=N` suffix on `minilm` or a layer spec is validated and stripped (read it with `parse_pruning`);
    `heads=H` is refused, as a head-pruned model cannot be reloaded by transformers 5."""
    base, pruning = parse_pruning(spec)
    if pruning is not None and pruning.heads is not None:
        raise ValueError(
            f"bad student {spec!r}: heads=H pruning cannot be saved and reloaded with transformers 5 "
            "(no prune_heads / pruned_heads); use SPEC@ffn=N"
        )
    spec = base
    if spec == "minilm":
        return "minilm", spec
    for prefix, kind in LAYER_PREFIXES.items():
        if not spec.startswith(prefix):
            continue
        argument = spec[len(prefix) :]
        listed = "," in argument  # `i,j,...` lists layers; a single layer is written `i,` (`N` alone is a count)
        parts = argument.removesuffix(",").split(",") if listed else [argument]
        if not argument or not all(part.strip().isdigit() for part in parts):
            raise ValueError(
                f"bad student {spec!r}: use {prefix}N (N evenly spaced layers, N >= 1), "
                f"{prefix}i,j,... (those 0-based layers) or {prefix}i, (layer i alone)"
            )
        if not listed:
            if int(argument) < 1:
                raise ValueError(f"bad student {spec!r}: use {prefix}N with N >= 1")
            return kind, int(argument)  # type: ignore[return-value]
        indices = [int(part) for part in parts]
        if indices != sorted(set(indices)):
            raise ValueError(f"bad student {spec!r}: list the layers in increasing order, each once")
        return kind, indices  # type: ignore[return-value]
    if Path(spec).expanduser().is_dir():
        return "folder", spec
    raise ValueError(f"unknown student {spec!r}: use one of {', '.join(STUDENT_NAMES)}")
