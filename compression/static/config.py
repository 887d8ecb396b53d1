"""What a static-encoder build is: `StaticConfig` (validated, stored in the report) and its allowed names.

Stdlib only, so the torch-free query path can import the package."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from compression.precision import PRECISION_NAMES, Precision

StaticLoss = Literal["mse", "mse+rank"]
TokenInit = Literal["teacher-tokens", "teacher-embeddings"]
StaticOptimizer = Literal["sparse-adam", "adamw"]
InitMap = Literal["linear", "center", "none"]
STATIC_LOSSES: tuple[str, ...] = get_args(StaticLoss)
TOKEN_INITS: tuple[str, ...] = get_args(TokenInit)
STATIC_OPTIMIZERS: tuple[str, ...] = get_args(StaticOptimizer)
INIT_PRECISIONS = PRECISION_NAMES
INIT_MAPS: tuple[str, ...] = get_args(InitMap)


@dataclass(frozen=True)
class StaticConfig:
    """How to build a static query encoder in the teacher's space: one vector per token, summed, L2-normalised.

    epochs, learning_rate, batch_size: the gradient fit of the table to the teacher's sentence vectors (texts per
        step); the rows are scaled to a mean norm of 1 first, so the learning rate is relative to that. On SciFact
        (20k texts, 8 epochs) 0.003 ends at a held-out cosine of 0.831, 0.01 at 0.826.
    loss: `mse` (2 - 2 cos to the teacher's vector) or `mse+rank` (mse + rank_weight * the teacher-vs-student KL of
        each text's similarity distribution over the teacher's document vectors, `ranking_kl_loss`).
    rank_weight, temperature: weight and softmax temperature of the rank term.
    max_seq_length: the teacher's truncation, special tokens included (as for the teacher's targets); the static
        encoder keeps the first max_seq_length - (number of special tokens) tokens of a text.
    seed: seeds the table's optimiser and the batch order.
    token_init: `teacher-tokens` (each token's row is the teacher's un-normalised output for [CLS] token [SEP],
        see `token_vectors`) or `teacher-embeddings` (the teacher's input word embeddings: no forward pass, but not
        in the output space; only where the teacher's hidden size is its output dim).
    init_precision: the numeric precision of the init's forward pass: `bf16` autocast, `fp32`, or `auto` (bf16
        where the CPU computes it natively).
    init_map: what the fit first does to every row of the init, in closed form, before the gradient steps:
        `linear` (the ridge least-squares map W, b from the mean of a text's init rows to its teacher vector, applied
        to each row: row @ W + b; rows of tokens never seen in training move too, which is what carries the fit
        to unseen text), `center` (subtract the mean row: the raw rows share one large component, so their sums
        all point alike) or `none`. On SciFact (all-mpnet-base-v2, 20k texts, 200 held out) the init's held-out
        cosine to the teacher is 0.15 raw, 0.28 centred, 0.73 after the linear map.
    init_map_texts: how many of the training texts (the first ones: pass them shuffled) fit the linear map.
    optimizer: `sparse-adam` (torch SparseAdam on a sparse EmbeddingBag: only the rows of a batch's tokens move,
        rows never seen keep their (mapped) init exactly) or `adamw` (dense AdamW without weight decay: every row
        moves while its moments decay; ~4x slower per step on the 30k x 768 table).
    """

    epochs: int = 8
    learning_rate: float = 0.003
    batch_size: int = 256
    loss: StaticLoss = "mse"
    rank_weight: float = 1.0
    temperature: float = 0.05
    max_seq_length: int = 32
    seed: int = 0
    token_init: TokenInit = "teacher-tokens"
    init_precision: Precision = "auto"
    init_map: InitMap = "linear"
    init_map_texts: int = 20000
    optimizer: StaticOptimizer = "sparse-adam"

    def __post_init__(self) -> None:
        choices = {
            "loss": (self.loss, STATIC_LOSSES),
            "token_init": (self.token_init, TOKEN_INITS),
            "init_precision": (self.init_precision, INIT_PRECISIONS),
            "init_map": (self.init_map, INIT_MAPS),
            "optimizer": (self.optimizer, STATIC_OPTIMIZERS),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
        at_least = {
            "epochs": (self.epochs, 0),
            "batch_size": (self.batch_size, 1),
            "max_seq_length": (self.max_seq_length, 3),
            "init_map_texts": (self.init_map_texts, 2),
        }
        for name, (value, low) in at_least.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, value in {"learning_rate": self.learning_rate, "temperature": self.temperature}.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not self.rank_weight >= 0:
            raise ValueError(f"rank_weight must be >= 0, got {self.rank_weight}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StaticConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown static config keys {unknown}: use {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)
