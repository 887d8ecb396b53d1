"""The static table's starting point, from the teacher: `token_vectors` (a forward pass per token, like model2vec's
distill) or `input_embeddings` (the teacher's input word embeddings, no forward pass).

Every token id of the teacher's tokenizer gets a row, none skipped: tokens never seen in training keep this row,
which is what lets the static encoder say something about texts of an unseen corpus. torch and
sentence-transformers are imported lazily, inside the functions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compression.precision import resolve_precision
from compression.static.config import TokenInit
from compression.static.encoder import STATIC_TOKENIZER_FILE, load_tokenizer
from semsearch_common.progress import make_progress

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

TOKEN_BATCH_SIZE = 256
MODULES_FILE = "modules.json"
SBERT_CONFIG_FILE = "sentence_bert_config.json"


def transformer_dir(teacher_dir: Path) -> Path:
    """The folder of the teacher's first (Transformer) module, where its tokenizer and sentence_bert_config live:
    the model folder itself for most models, `0_Transformer/` for some."""
    teacher_dir = Path(teacher_dir)
    modules = teacher_dir / MODULES_FILE
    if not modules.is_file():
        return teacher_dir
    entries = sorted(json.loads(modules.read_text(encoding="utf-8")), key=lambda entry: entry.get("idx", 0))
    return teacher_dir / entries[0].get("path", "") if entries else teacher_dir


def teacher_tokenizer_file(teacher_dir: Path) -> Path:
    """The teacher's fast tokenizer file; ValueError naming it when the teacher has none."""
    path = transformer_dir(teacher_dir) / STATIC_TOKENIZER_FILE
    if not path.is_file():
        raise ValueError(f"{path} not found: a static encoder needs the teacher's fast tokenizer (tokenizer.json)")
    return path


def teacher_lowercases(teacher_dir: Path) -> bool:
    """The sentence-transformers `do_lower_case` setting of the teacher's Transformer module (default False)."""
    path = transformer_dir(teacher_dir) / SBERT_CONFIG_FILE
    if not path.is_file():
        return False
    return bool(json.loads(path.read_text(encoding="utf-8")).get("do_lower_case", False))


def special_tokens_around(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one text: ([CLS], [SEP]) for BERT, ([<s>], [</s>])
    for MPNet, ([], []) for a tokenizer without a post-processor."""
    encoding = tokenizer.encode("x", add_special_tokens=True)
    kept = [i for i, attended in enumerate(encoding.attention_mask) if attended]  # a file's padding left out
    ids = [encoding.ids[i] for i in kept]
    content = [j for j, i in enumerate(kept) if not encoding.special_tokens_mask[i]]
    if not content:
        raise ValueError("the tokenizer gives no content token for the text 'x'")
    return ids[: content[0]], ids[content[-1] + 1 :]


def resolve_autocast(precision: str) -> bool:
    """Whether `precision` (`auto`, `fp32`, `bf16`; see `compression.precision`) runs the forward under bf16."""
    return resolve_precision(precision) == "bf16"


def vocabulary_size(teacher_dir: Path) -> int:
    """How many token ids the teacher's tokenizer has: the rows of a full `token_vectors` table."""
    return int(load_tokenizer(teacher_tokenizer_file(teacher_dir)).get_vocab_size())


def load_teacher(teacher_dir: Path) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(teacher_dir), device="cpu", local_files_only=True)


def token_vectors(
    teacher_dir: Path,
    batch_size: int = TOKEN_BATCH_SIZE,
    autocast: bool | None = None,
    show_progress: bool = True,
    token_ids: Sequence[int] | None = None,
    model: SentenceTransformer | None = None,
) -> np.ndarray:
    """(vocabulary size, dim) float32: row t is the teacher's output for the sequence [CLS] t [SEP], through all
    its modules (Transformer, mean Pooling, any Dense) but a final Normalize: the un-normalised sentence vector.

    `token_ids` restricts the rows to those ids (in that order); default every id of the teacher's tokenizer.
    Every sequence has the same length, so batches need no padding. `autocast` runs the forward under bf16
    autocast (None: where the CPU computes bf16 natively; on this project's CPU 1.9x faster, cosine 0.99998).
    `model` reuses an already loaded teacher.
    """
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tokenizer = load_tokenizer(teacher_tokenizer_file(teacher_dir))
    vocab_size = tokenizer.get_vocab_size()
    ids = np.arange(vocab_size) if token_ids is None else np.asarray(token_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got {int(ids.min())}..{int(ids.max())}")
    use_bf16 = resolve_autocast("auto") if autocast is None else autocast
    model = model if model is not None else load_teacher(teacher_dir)
    model.eval()
    modules = list(model)
    if modules and isinstance(modules[-1], Normalize):
        modules = modules[:-1]
    prefix, suffix = special_tokens_around(tokenizer)
    template = _feature_template(model)
    out = np.zeros((len(ids), model.get_embedding_dimension()), dtype=np.float32)
    started = time.perf_counter()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), context, make_progress(show_progress) as progress:
        task = progress.add_task("token vectors", total=len(ids), info="")
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            input_ids = torch.tensor([[*prefix, int(t), *suffix] for t in chunk], dtype=torch.long)
            features = _features(template, input_ids)
            for module in modules:
                features = module(features)
            out[start : start + len(chunk)] = features["sentence_embedding"].float().numpy()
            done = start + len(chunk)
            progress.update(task, completed=done, info=f"{done / max(time.perf_counter() - started, 1e-9):.0f} tok/s")
    logger.info(
        "token vectors: %d tokens in %.1f s (%s)",
        len(ids),
        time.perf_counter() - started,
        "bf16" if use_bf16 else "fp32",
    )
    return out


def _feature_template(model: SentenceTransformer) -> dict[str, Any]:
    """What the teacher's preprocessing gives for one text: which inputs it takes, plus non-tensor keys (modality)."""
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6 / older
    return dict(preprocess(["x"]))


def _features(template: dict[str, Any], input_ids: Any) -> dict[str, Any]:
    import torch

    features: dict[str, Any] = {}
    for key, value in template.items():
        if not isinstance(value, torch.Tensor):
            features[key] = value
        elif key == "input_ids":
            features[key] = input_ids
        elif key == "attention_mask":
            features[key] = torch.ones_like(input_ids)
        elif key == "token_type_ids":
            features[key] = torch.zeros_like(input_ids)
        else:
            raise ValueError(f"the teacher takes an input {key!r}: only input_ids, attention_mask, token_type_ids")
    return features


def input_embeddings(teacher_dir: Path, model: SentenceTransformer | None = None) -> np.ndarray:
    """(vocabulary size, dim) float32: the teacher's input word embeddings (no forward pass). They are not in the
    output space, so training has more to do; only for teachers whose hidden size is their output dim."""
    tokenizer = load_tokenizer(teacher_tokenizer_file(teacher_dir))
    model = model if model is not None else load_teacher(teacher_dir)
    weight = model[0].auto_model.get_input_embeddings().weight.detach().float().numpy()
    dim = model.get_embedding_dimension()
    if weight.shape[1] != dim:
        raise ValueError(
            f"the teacher's word embeddings are {weight.shape[1]}-d but its output {dim}-d: use token_init "
            "teacher-tokens"
        )
    vocab_size = tokenizer.get_vocab_size()
    if weight.shape[0] < vocab_size:
        raise ValueError(f"the teacher has {weight.shape[0]} word embeddings for {vocab_size} tokens")
    return np.ascontiguousarray(weight[:vocab_size], dtype=np.float32)


def initial_table(
    teacher_dir: Path, token_init: TokenInit, precision: str = "auto", show_progress: bool = True
) -> np.ndarray:
    """The table `token_init` names: `teacher-tokens` (`token_vectors`) or `teacher-embeddings`
    (`input_embeddings`)."""
    if token_init == "teacher-tokens":
        return token_vectors(teacher_dir, autocast=resolve_autocast(precision), show_progress=show_progress)
    if token_init == "teacher-embeddings":
        return input_embeddings(teacher_dir)
    raise ValueError(f"unknown token_init {token_init!r}: use teacher-tokens or teacher-embeddings")
