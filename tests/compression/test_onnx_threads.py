"""The ONNX encoder's thread settings: spinning off unless asked, read back from the live session, and neither
the setting nor the thread count changes the vectors or the identity (so caches and index directories stay valid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.encoders.onnx import ALLOW_SPINNING, OnnxEncoder
from compression.onnx_export import export_onnx

TEXTS = ["Hi", "Vitamin D lowers the risk of fractures in older adults.", "token " * 200, "cells"]


@pytest.fixture(scope="module")
def onnx_dir(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_tiny_sentence_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, max_seq_length=64)
    return export_onnx(model, model.parent / "onnx")


def test_spinning_is_off_by_default_and_set_on_the_live_session(onnx_dir: Path) -> None:
    quiet = OnnxEncoder(onnx_dir, threads=1)
    spinning = OnnxEncoder(onnx_dir, threads=1, spinning=True)
    assert quiet.spinning is False
    assert spinning.spinning is True
    assert quiet.session_setting(ALLOW_SPINNING) == "0"
    assert spinning.session_setting(ALLOW_SPINNING) == "1"
    assert quiet.session_setting("session.no_such_entry") is None


def test_thread_settings_change_neither_vectors_nor_identity(onnx_dir: Path) -> None:
    reference = OnnxEncoder(onnx_dir, threads=1)
    want = reference.encode(TEXTS, batch_size=2)
    for threads, spinning in ((None, False), (2, True), (1, True)):
        encoder = OnnxEncoder(onnx_dir, threads=threads, spinning=spinning)
        np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=2), want, atol=1e-5)
        assert encoder.identity() == reference.identity()
    np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)
