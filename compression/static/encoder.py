"""The static query encoder: one vector per token of the teacher's tokenizer, summed over a text's tokens and
L2-normalised. No transformer at query time: a tokenizer call, a row gather and a sum.

Torch-free: this module imports numpy, `tokenizers` and the stdlib-and-numpy modules `compression.encoders.base`
and `compression.models`, never torch, transformers or sentence-transformers (tests check `sys.modules`).

A static folder holds:
- `static_config.json` (a `StaticModelConfig`: format version, dim, vocabulary size, truncation, precision, ...);
- `embeddings.npy`: the (vocabulary size, dim) table, float32 (`fp32`) or int8 (`int8`, see `quantize_static`);
- `scales.npy`: the float32 per-row scales of an int8 table (row i = embeddings[i] * scales[i]);
- `tokenizer.json`: the teacher's fast tokenizer;
- `static_report.json`: how it was built (informative only, never read back).

A text's vector is the normalised sum of the rows of its first `max_tokens` tokens, special tokens not added (sum
and mean give the same direction; the learned row norms act as token weights). A text without tokens (empty or
whitespace) gets the row of the tokenizer's unknown token (`empty_token_id`), so every output is a unit vector.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from compression.encoders.base import TextKind, check_kind, count_truncated, l2_normalise
from compression.models import folder_encoder_identity, model_bytes

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

STATIC_FORMAT_VERSION = 1
STATIC_CONFIG_FILE = "static_config.json"
STATIC_TABLE_FILE = "embeddings.npy"
STATIC_SCALES_FILE = "scales.npy"
STATIC_TOKENIZER_FILE = "tokenizer.json"
STATIC_REPORT_FILE = "static_report.json"
STATIC_POOLING = "sum-normalised"

StaticPrecision = Literal["fp32", "int8"]
STATIC_PRECISIONS: tuple[str, ...] = get_args(StaticPrecision)


@dataclass(frozen=True)
class StaticModelConfig:
    """What `static_config.json` records about a static encoder folder.

    max_seq_length: the teacher's truncation (special tokens included); max_tokens: the tokens a text keeps here
    (max_seq_length minus the special tokens the teacher adds). empty_token_id: the row a text without tokens gets.
    do_lower_case: lower-case texts before tokenising (the sentence-transformers setting; the tokenizer's own
    normaliser may lower-case too). source_*: the teacher the table was initialised from.
    """

    dim: int
    vocab_size: int
    max_seq_length: int
    max_tokens: int
    empty_token_id: int
    do_lower_case: bool = False
    precision: StaticPrecision = "fp32"
    pooling: str = STATIC_POOLING
    normalized: bool = True
    token_init: str = "teacher-tokens"
    trained: bool = True
    source_path: str = ""
    source_fingerprint: str = ""
    format_version: int = STATIC_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != STATIC_FORMAT_VERSION:
            raise ValueError(
                f"static format version {self.format_version} is not supported: this code reads version "
                f"{STATIC_FORMAT_VERSION}; rebuild the folder"
            )
        if self.precision not in STATIC_PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(STATIC_PRECISIONS)}")
        if self.pooling != STATIC_POOLING:
            raise ValueError(f"unknown pooling {self.pooling!r}: use {STATIC_POOLING}")
        for name in ("dim", "vocab_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.empty_token_id < self.vocab_size:
            raise ValueError(f"empty_token_id {self.empty_token_id} is outside the vocabulary [0, {self.vocab_size})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StaticModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}: use {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def read(cls, folder: Path) -> StaticModelConfig:
        """Read and validate `folder/static_config.json`; ValueError naming the file when it is missing or bad."""
        path = Path(folder) / STATIC_CONFIG_FILE
        if not path.is_file():
            raise ValueError(
                f"{path} not found: {folder} is not a static encoder folder "
                "(build one with compression.static.build_static_encoder)"
            )
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: bad static encoder config: {err}") from err


def special_token_count(tokenizer: Tokenizer) -> int:
    """How many special tokens the tokenizer adds around one text ([CLS] and [SEP]: 2; none without a
    post-processor)."""
    processor = tokenizer.post_processor
    return int(processor.num_special_tokens_to_add(False)) if processor is not None else 0


def unknown_token_id(tokenizer: Tokenizer) -> int:
    """The id of the token the tokenizer emits for unknown text, or 0 when its model has no unknown token."""
    model = json.loads(tokenizer.to_str()).get("model", {})
    token = model.get("unk_token")
    found = tokenizer.token_to_id(token) if token else None
    return int(found) if found is not None else 0


def load_tokenizer(path: Path) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a tokenizer.json file, without the truncation or padding stored in the file."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: a static encoder needs the teacher's fast tokenizer file")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class StaticTokenizer:
    """Texts -> token ids as the static encoder sees them: special tokens not added, the first `max_tokens` kept,
    a text without tokens given `[empty_token_id]`. Training and encoding share it, so they see the same ids."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, empty_token_id: int, do_lower_case: bool = False) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.empty_token_id = empty_token_id
        self.do_lower_case = do_lower_case

    def prepare(self, text: str) -> str:
        text = str(text).strip()
        return text.lower() if self.do_lower_case else text

    def ids(self, text: str) -> list[int]:
        """One text's token ids (never empty)."""
        ids = self.tokenizer.encode(self.prepare(text), add_special_tokens=False).ids[: self.max_tokens]
        return ids or [self.empty_token_id]

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token ids per text as `ids` keeps them (at most `max_tokens`, at least 1), tokenising a bounded prefix."""

        def lengths(chunk: list[str]) -> list[int]:
            encodings = self.tokenizer.encode_batch([self.prepare(text) for text in chunk], add_special_tokens=False)
            return [max(1, len(e.ids)) for e in encodings]

        return count_truncated(lengths, texts, self.max_tokens)

    def flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(all texts' token ids concatenated, int64; each text's start offset in it, int64): the layout of
        `np.add.reduceat` and torch's EmbeddingBag."""
        encodings = self.tokenizer.encode_batch([self.prepare(text) for text in texts], add_special_tokens=False)
        lists = [e.ids[: self.max_tokens] or [self.empty_token_id] for e in encodings]
        lengths = np.fromiter((len(ids) for ids in lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        flat = np.fromiter((i for ids in lists for i in ids), dtype=np.int64, count=int(lengths.sum()))
        return flat, offsets


def sum_rows(table: np.ndarray, flat: np.ndarray, offsets: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """Per text, the sum of `table` rows over its tokens (int8 rows times `scales`), un-normalised float32.

    Every text must have at least one token (`StaticTokenizer` guarantees it)."""
    if not len(offsets):
        return np.zeros((0, table.shape[1]), dtype=np.float32)
    rows = table[flat]
    if scales is not None:
        rows = rows.astype(np.float32) * scales[flat, None]
    return np.add.reduceat(rows, offsets, axis=0)


def pool_rows(table: np.ndarray, flat: np.ndarray, offsets: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """Unit float32 rows: per text, the normalised sum of its tokens' rows (see `sum_rows`)."""
    return l2_normalise(sum_rows(table, flat, offsets, scales))


class StaticEncoder:
    """The `Encoder` protocol on a static table: tokenise (`encode_pre`), gather and sum rows (`encode_core`),
    normalise (`encode_post`). A single text takes a fast path (one tokenizer call, `table[ids].sum(0)`)."""

    def __init__(self, folder: Path | str, name: str | None = None) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.config = StaticModelConfig.read(self.folder)
        self.name = name or self.folder.name
        self.dim = self.config.dim
        self.max_seq_length = self.config.max_seq_length
        self.precision: StaticPrecision = self.config.precision
        self.table, self.scales = read_table(self.folder, self.config)
        tokenizer = load_tokenizer(self.folder / STATIC_TOKENIZER_FILE)
        if tokenizer.get_vocab_size() > self.config.vocab_size:
            raise ValueError(
                f"{self.folder / STATIC_TOKENIZER_FILE}: the tokenizer has {tokenizer.get_vocab_size()} tokens but "
                f"{STATIC_TABLE_FILE} only {self.config.vocab_size} rows"
            )
        self.tokenizer = StaticTokenizer(
            tokenizer, self.config.max_tokens, self.config.empty_token_id, self.config.do_lower_case
        )

    def encode_pre(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise a batch into (flat ids, offsets)."""
        return self.tokenizer.flat(texts)

    def encode_core(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Sum the rows of each text's tokens (un-normalised)."""
        return sum_rows(self.table, flat, offsets, self.scales)

    def encode_post(self, vectors: np.ndarray) -> np.ndarray:
        """Contiguous float32 unit rows."""
        return np.ascontiguousarray(l2_normalise(vectors), dtype=np.float32)

    def sum_ids(self, ids: list[int]) -> np.ndarray:
        """The unit vector of one text's token ids, shape (dim,): `table[ids].sum(0)`, normalised."""
        vector = self.table[ids].sum(axis=0) if self.scales is None else self.scales[ids] @ self.table[ids]
        return (vector / max(float(np.sqrt(vector @ vector)), 1e-12)).astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        """The fast path: one text's unit vector, shape (dim,)."""
        return self.sum_ids(self.tokenizer.ids(text))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count(texts)

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        if len(texts) != 1:
            return self.encode_timed(texts, kind=kind, batch_size=batch_size)[0]
        check_kind(kind)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self.encode_one(texts[0])[None, :]

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """`encode`, also returning the seconds spent tokenising, so callers can split the two stages."""
        check_kind(kind)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(texts) == 1:
            started = time.perf_counter()
            ids = self.tokenizer.ids(texts[0])
            tokenize_seconds = time.perf_counter() - started
            return self.sum_ids(ids)[None, :], tokenize_seconds
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokenize_seconds = 0.0
        for start in range(0, len(texts), batch_size):
            started = time.perf_counter()
            flat, offsets = self.encode_pre(texts[start : start + batch_size])
            tokenize_seconds += time.perf_counter() - started
            out[start : start + len(offsets)] = self.encode_post(self.encode_core(flat, offsets))
        return out, tokenize_seconds

    def identity(self) -> dict[str, Any]:
        return folder_encoder_identity("static", self.name, self.folder, self.dim, self.max_seq_length, self.precision)

    def model_bytes(self) -> int:
        return model_bytes(self.folder)


def read_table(folder: Path, config: StaticModelConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Load and check a folder's table (and an int8 table's scales); ValueError naming the file when bad."""
    expected = (config.vocab_size, config.dim)
    dtype = np.float32 if config.precision == "fp32" else np.int8
    table = _load(Path(folder) / STATIC_TABLE_FILE)
    if table.shape != expected or table.dtype != dtype:
        raise ValueError(
            f"{Path(folder) / STATIC_TABLE_FILE}: {table.dtype} {table.shape}, but {STATIC_CONFIG_FILE} says "
            f"{np.dtype(dtype)} {expected}"
        )
    if config.precision == "fp32":
        return np.ascontiguousarray(table), None
    scales = _load(Path(folder) / STATIC_SCALES_FILE)
    if scales.shape != (config.vocab_size,) or scales.dtype != np.float32:
        raise ValueError(
            f"{Path(folder) / STATIC_SCALES_FILE}: {scales.dtype} {scales.shape}, "
            f"expected float32 ({config.vocab_size},)"
        )
    return np.ascontiguousarray(table), np.ascontiguousarray(scales)


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path} not found: the static encoder folder is incomplete")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable array ({err})") from err
