"""The tokenize / encode split (`encode_timed`) of every encoder: same vectors as `encode`, tokenising timed apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.encoders import FakeEncoder, TimedEncoder, encode_timed

TEXTS = ["Hi", "Vitamin D lowers the risk of fractures in older adults.", "token " * 200, "cells", "  spaced  "]


@pytest.fixture(scope="module")
def tiny_model_dir(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, max_seq_length=64)


def test_fake_encoder_split():
    encoder = FakeEncoder(dim=16)
    vectors, tokenize_seconds = encoder.encode_timed(TEXTS)
    np.testing.assert_array_equal(vectors, FakeEncoder(dim=16).encode(TEXTS))
    assert tokenize_seconds >= 0.0
    assert encoder.calls == [len(TEXTS)]


def test_encoders_without_the_split_report_zero_tokenize():
    class Plain:
        name, dim = "plain", 4

        def encode(self, texts, kind="query", batch_size=32):
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    assert not isinstance(Plain(), TimedEncoder)
    vectors, tokenize_seconds = encode_timed(Plain(), ["a", "b"])  # type: ignore[arg-type]
    assert vectors.shape == (2, 4)
    assert tokenize_seconds == 0.0


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_sentence_transformer_split_matches_encode(tiny_model_dir, batch_size):
    from compression.encoders import SentenceTransformerEncoder
    from compression.models import ModelRef

    encoder = SentenceTransformerEncoder(ModelRef("tiny", tiny_model_dir), threads=1)
    vectors, tokenize_seconds = encoder.encode_timed(TEXTS, batch_size=batch_size)
    np.testing.assert_allclose(vectors, encoder.encode(TEXTS, batch_size=batch_size), atol=1e-5)
    assert tokenize_seconds > 0.0
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown text kind"):
        encoder.encode_timed(TEXTS, kind="doc")  # type: ignore[arg-type]


def test_onnx_split_matches_encode(tiny_model_dir):
    from compression.encoders.onnx import OnnxEncoder
    from compression.onnx_export import export_onnx

    encoder = OnnxEncoder(export_onnx(tiny_model_dir, tiny_model_dir.parent / "onnx"), threads=1)
    vectors, tokenize_seconds = encoder.encode_timed(TEXTS, batch_size=2)
    np.testing.assert_allclose(vectors, encoder.encode(TEXTS, batch_size=2), atol=1e-6)
    assert tokenize_seconds > 0.0


def test_a_bf16_encoder_says_so_and_stays_close_to_fp32(build_tiny_sentence_model, tmp_path: Path) -> None:
    from compression.encoders import load_encoder

    folder = build_tiny_sentence_model(tmp_path / "tiny", seed=0)
    texts = ["gene expression in mice", "blood pressure and heart failure", "vitamin d deficiency"]
    fp32, bf16 = load_encoder(str(folder)), load_encoder(str(folder), precision="bf16")
    assert "precision" not in fp32.identity()
    assert bf16.identity()["precision"] == "bf16"
    a, b = fp32.encode(texts), bf16.encode(texts)
    assert b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() > 0.98
    assert not np.array_equal(a, b)  # bf16 rounding, not the fp32 computation again
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        load_encoder(str(folder), precision="fp16")
