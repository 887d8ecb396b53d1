"""Token counting (`Encoder.count_tokens`): tokens per text after truncation, as an independent tokenizer call counts
them, tokenising only a bounded prefix of long texts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compression.encoders import FakeEncoder
from compression.encoders.base import COUNT_CHARS_PER_TOKEN, count_truncated

MAX_SEQ_LENGTH = 64
LONG_WORDS = ("x" * 150 + " ") * 60  # 60 words WordPiece maps to [UNK] each: the prefix holds too few tokens
TEXTS = [
    "Hi",
    "Vitamin D lowers the risk of fractures in older adults.",
    "token " * 200,
    "  spaced  ",
    "cells and proteins " * 600,  # 11,400 characters: counted from a prefix
    LONG_WORDS,
]


@pytest.fixture(scope="module")
def tiny_model_dir(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_model(tmp_path_factory.mktemp("tiny") / "model", max_seq_length=MAX_SEQ_LENGTH)


def reference_counts(model_dir: Path, texts: list[str]) -> list[int]:
    """transformers' own tokenizer, on the full texts, truncating to the model's length with special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return [len(tokenizer(text, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]) for text in texts]


def test_count_truncated_is_exact_and_tokenises_a_bounded_prefix():
    seen: list[int] = []

    def words(chunk: list[str]) -> list[int]:
        seen.extend(len(text) for text in chunk)
        return [len(re.findall(r"\w+", text)) for text in chunk]

    texts = ["a b c", "", "word " * 2000, "y" * 5000 + " z"]
    assert count_truncated(words, texts, 100) == [3, 0, 100, 2]
    first = seen[: len(texts)]
    assert max(first) <= 100 * COUNT_CHARS_PER_TOKEN  # the first pass sees prefixes only
    assert seen[len(texts) :] == [5002]  # only the text whose prefix fell short is counted again in full
    assert count_truncated(words, [], 100) == []
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        count_truncated(words, texts, 0)


def test_fake_encoder_counts_words_capped_without_encoding():
    encoder = FakeEncoder(dim=8, max_seq_length=8)
    assert encoder.count_tokens(["a b c", "", "word " * 20, "Vitamin-D, bone!"]) == [3, 1, 8, 3]
    assert encoder.calls == []  # counting is not model work
    with pytest.raises(ValueError, match="max_seq_length must be >= 1"):
        FakeEncoder(max_seq_length=0)


def test_sentence_transformer_counts_match_transformers(tiny_model_dir):
    from compression.encoders import SentenceTransformerEncoder
    from compression.models import ModelRef

    encoder = SentenceTransformerEncoder(ModelRef("tiny", tiny_model_dir), threads=1)
    counts = encoder.count_tokens(TEXTS)
    assert counts == reference_counts(tiny_model_dir, TEXTS)
    assert counts[2] == counts[4] == MAX_SEQ_LENGTH
    assert counts[-1] == 62  # 60 [UNK] + [CLS] + [SEP]


def test_onnx_counts_match_transformers(tiny_model_dir):
    from compression.encoders.onnx import OnnxEncoder
    from compression.onnx_export import export_onnx

    encoder = OnnxEncoder(export_onnx(tiny_model_dir, tiny_model_dir.parent / "onnx"), threads=1)
    assert encoder.count_tokens(TEXTS) == reference_counts(tiny_model_dir, TEXTS)
    assert encoder.count_tokens([]) == []
