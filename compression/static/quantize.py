"""int8 static tables: per-row symmetric quantisation (`quantize_rows`) and `quantize_static`, which writes the int8
folder of a float32 one. Row i is stored as round(row / scale_i) in [-127, 127] with scale_i = max|row| / 127, so
every row keeps its own range (rows of rare and common tokens differ in norm)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from compression.static.encoder import (
    STATIC_CONFIG_FILE,
    STATIC_REPORT_FILE,
    STATIC_SCALES_FILE,
    STATIC_TABLE_FILE,
    STATIC_TOKENIZER_FILE,
    StaticModelConfig,
    read_table,
)
from semsearch_common.atomic import copy_file_atomic, save_array_atomic, staged_folder, write_json_atomic

INT8_MAX = 127


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 table, float32 per-row scales) with table ~= int8 * scales[:, None]; an all-zero row gets scale 1."""
    table = np.asarray(table, dtype=np.float32)
    peaks = np.abs(table).max(axis=1)
    scales = np.where(peaks > 0, peaks / INT8_MAX, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(table / scales[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return quantized, scales


def quantize_static(folder_fp32: Path, folder_int8: Path) -> StaticModelConfig:
    """Write the int8 version of the float32 static folder `folder_fp32` at `folder_int8` (atomically); return its
    config. The tokenizer and the build report are carried over."""
    folder_fp32 = Path(folder_fp32)
    config = StaticModelConfig.read(folder_fp32)
    if config.precision != "fp32":
        raise ValueError(f"{folder_fp32 / STATIC_CONFIG_FILE}: precision is {config.precision}, expected fp32")
    table, _ = read_table(folder_fp32, config)
    quantized, scales = quantize_rows(table)
    int8_config = dataclasses.replace(config, precision="int8")
    with staged_folder(folder_int8) as staging:
        save_array_atomic(staging / STATIC_TABLE_FILE, quantized)
        save_array_atomic(staging / STATIC_SCALES_FILE, scales)
        copy_file_atomic(folder_fp32 / STATIC_TOKENIZER_FILE, staging / STATIC_TOKENIZER_FILE)
        if (folder_fp32 / STATIC_REPORT_FILE).is_file():
            copy_file_atomic(folder_fp32 / STATIC_REPORT_FILE, staging / STATIC_REPORT_FILE)
        write_json_atomic(staging / STATIC_CONFIG_FILE, int8_config.to_dict())
    return int8_config
