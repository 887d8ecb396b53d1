"""int8 static tables: per-row symmetric quantisation, and an int8 folder that encodes like its fp32 source."""

from __future__ import annotations

import numpy as np
import pytest

from compression.encoders import load_encoder
from compression.static import STATIC_SCALES_FILE, STATIC_TABLE_FILE, StaticEncoder, quantize_rows, quantize_static

TEXTS = ["Vitamin D lowers the risk of fractures.", "cells", "", "heart failure and blood pressure " * 5]


def test_rows_round_trip_within_half_a_step():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((50, 24)).astype(np.float32) * rng.uniform(0.01, 10, (50, 1)).astype(np.float32)
    table[3] = 0.0
    quantized, scales = quantize_rows(table)
    assert quantized.dtype == np.int8
    assert scales.dtype == np.float32
    assert scales.shape == (50,)
    assert np.abs(quantized).max() <= 127
    assert scales[3] == 1.0
    assert not quantized[3].any()
    np.testing.assert_allclose(np.abs(table).max(axis=1)[np.arange(50) != 3], 127 * scales[np.arange(50) != 3],
                               rtol=1e-6)  # fmt: skip
    error = np.abs(quantized * scales[:, None] - table)
    assert (error <= scales[:, None] / 2 + 1e-6).all()


def test_int8_folder_encodes_like_fp32(static_folder, tmp_path, make_sentences):
    int8_dir = tmp_path / "int8"
    config = quantize_static(static_folder, int8_dir)
    assert config.precision == "int8"
    fp32, int8 = StaticEncoder(static_folder), load_encoder(str(int8_dir))
    assert isinstance(int8, StaticEncoder)
    assert int8.precision == "int8"
    assert int8.identity()["precision"] == "int8"
    texts = TEXTS + make_sentences(100, 5)
    cosines = np.sum(fp32.encode(texts) * int8.encode(texts), axis=1)
    assert cosines.min() > 0.99
    for text in TEXTS:  # the single-text path dequantises too
        np.testing.assert_allclose(int8.encode([text])[0], int8.encode(TEXTS)[TEXTS.index(text)], atol=1e-5)
    table_bytes = (static_folder / STATIC_TABLE_FILE).stat().st_size
    int8_bytes = (int8_dir / STATIC_TABLE_FILE).stat().st_size + (int8_dir / STATIC_SCALES_FILE).stat().st_size
    assert int8_bytes < 0.35 * table_bytes
    with pytest.raises(ValueError, match="expected fp32"):
        quantize_static(int8_dir, tmp_path / "again")
    (int8_dir / STATIC_SCALES_FILE).unlink()
    with pytest.raises(ValueError, match=STATIC_SCALES_FILE):
        StaticEncoder(int8_dir)
