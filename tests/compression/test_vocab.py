"""Vocabulary pruning of exported ONNX folders, on a tiny seeded BERT in every graph form the project writes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from compression.encoders.onnx import ONNX_MODEL_FILE, OnnxEncoder
from compression.onnx_export import export_onnx
from compression.quantize import quantize_onnx
from compression.vocab import (
    REMAP_NAME,
    VOCAB_REPORT_FILE,
    PruneReport,
    prune_vocabulary,
    token_counts,
)

KEPT_TEXTS = (
    "Aspirin lowers the risk of heart attack.",
    "What is the role of microRNA in cancer cell proliferation?",
    "cells",
    "Vitamin D deficiency and bone density in older adults",
)
CALIBRATION_TEXTS = (
    "Gene expression profiling of tumour samples identified three molecular subtypes with distinct survival.",
    "The enzyme catalyses the first step of the pathway and is inhibited by its end product.",
    "Patients were followed for a median of 4.2 years; the primary outcome was hospital admission.",
    "We measured the concentration of the metabolite in plasma and urine before and after treatment.",
)
# every form of the embedding lookup: fp32 Gather, fp32 fused EmbedLayerNormalization, dynamic int8 fused
# (QEmbedLayerNormalization) and unfused (uint8 Gather -> DequantizeLinear), static QDQ (DequantizeLinear -> Gather)
FORMS = ("fp32", "fp32-fused", "int8-dynamic", "int8-dynamic-unfused", "int8-static")


@pytest.fixture(scope="module")
def tiny_dir(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_model(tmp_path_factory.mktemp("vocab") / "model", seed=1)


@pytest.fixture(scope="module")
def folders(tiny_dir: Path) -> dict[str, Path]:
    root = tiny_dir.parent
    fp32 = export_onnx(tiny_dir, root / "fp32")
    return {
        "fp32": fp32,
        "fp32-fused": export_onnx(tiny_dir, root / "fp32-fused", fuse=True),
        "int8-dynamic": quantize_onnx(fp32, root / "int8-dynamic"),
        "int8-dynamic-unfused": quantize_onnx(fp32, root / "int8-dynamic-unfused", fuse=False),
        "int8-static": quantize_onnx(fp32, root / "int8-static", mode="static", calibration_texts=CALIBRATION_TEXTS),
    }


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_dir))


def encode_features(folder: Path, features: dict[str, np.ndarray]) -> np.ndarray:
    return OnnxEncoder(folder, threads=1).encode_core(features)


def table_of(folder: Path, name: str | None = None) -> np.ndarray:
    """The token-embedding table as stored (float or int8): the initializer `name`, or else the one 2-D initializer
    with the tokenizer's 30,522 rows."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / ONNX_MODEL_FILE)).graph
    tables = [
        numpy_helper.to_array(i)
        for i in graph.initializer
        if (i.name == name if name else len(i.dims) == 2 and i.dims[0] == 30522)
    ]
    assert len(tables) == 1
    return tables[0]


def test_token_ids_match_the_source_tokenizer(folders: dict[str, Path], hf_tokenizer) -> None:
    expected = {token for ids in hf_tokenizer(list(KEPT_TEXTS))["input_ids"] for token in ids}
    assert set(token_counts(folders["fp32"], KEPT_TEXTS)) == expected
    assert {hf_tokenizer.cls_token_id, hf_tokenizer.sep_token_id} <= expected
    # a bare tokenizer folder (no onnx_config.json) gives the same ids for short texts
    assert set(token_counts(folders["fp32"].parent / "model", KEPT_TEXTS)) == expected


def test_token_counts_count_every_occurrence_but_padding(folders: dict[str, Path], hf_tokenizer) -> None:
    texts = [*KEPT_TEXTS, "cells cells cells"]  # texts of different lengths: the batch is padded
    expected = Counter(token for ids in hf_tokenizer(texts)["input_ids"] for token in ids)
    counts = token_counts(folders["fp32"], texts)
    assert counts == expected
    assert counts[hf_tokenizer.convert_tokens_to_ids("cells")] == 4
    assert hf_tokenizer.pad_token_id not in counts
    assert counts[hf_tokenizer.cls_token_id] == len(texts)


@pytest.mark.parametrize("form", FORMS)
def test_kept_texts_encode_as_before(folders: dict[str, Path], form: str, tmp_path: Path) -> None:
    source = folders[form]
    report = prune_vocabulary(source, set(token_counts(source, KEPT_TEXTS)), tmp_path / "pruned")
    before = OnnxEncoder(source, threads=1).encode(KEPT_TEXTS)
    after = OnnxEncoder(tmp_path / "pruned", threads=1).encode(KEPT_TEXTS)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert report.kept < 100
    assert report.old_vocab == table_of(source).shape[0]
    table = table_of(source)
    pruned_table = table_of(tmp_path / "pruned", report.table)
    kept = sorted(set(token_counts(source, KEPT_TEXTS)) | set(report.special_ids))
    np.testing.assert_array_equal(pruned_table, table[kept])  # the kept rows, in id order, bit for bit
    assert PruneReport.read(tmp_path / "pruned") == report
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("unk", ["tokenizer", "explicit"])
def test_dropped_token_encodes_as_unknown(folders: dict[str, Path], form: str, unk: str, hf_tokenizer, tmp_path: Path):
    source = folders[form]
    text = "aspirin lowers the risk of heart attack"
    dropped = hf_tokenizer.convert_tokens_to_ids("heart")
    unk_id = hf_tokenizer.unk_token_id if unk == "tokenizer" else hf_tokenizer.convert_tokens_to_ids("risk")
    keep = set(token_counts(source, [text])) - {dropped}
    prune_vocabulary(source, keep, tmp_path / "pruned", unk_id=None if unk == "tokenizer" else unk_id)

    features = OnnxEncoder(source, threads=1).encode_pre([text])
    assert dropped in features["input_ids"]
    replaced = {**features, "input_ids": np.where(features["input_ids"] == dropped, unk_id, features["input_ids"])}
    pruned = encode_features(tmp_path / "pruned", features)
    np.testing.assert_allclose(pruned, encode_features(source, replaced), atol=1e-6)
    original = encode_features(source, features)
    assert float(np.sum(pruned * original)) < 0.9999  # the replacement matters: the test can tell


@pytest.mark.parametrize("form", ["fp32", "int8-dynamic", "int8-dynamic-unfused"])
def test_file_shrinks_by_the_dropped_rows(folders: dict[str, Path], form: str, tmp_path: Path) -> None:
    source = folders[form]
    table = table_of(source)
    report = prune_vocabulary(source, range(1000, 1500), tmp_path / "pruned")
    dropped_rows = table.shape[0] - report.kept
    remap_bytes = table.shape[0] * (8 if form != "int8-dynamic" else 4)  # the fused graph gathers int32 ids
    expected = dropped_rows * table.shape[1] * table.itemsize - remap_bytes
    before = (source / ONNX_MODEL_FILE).stat().st_size
    after = (tmp_path / "pruned" / ONNX_MODEL_FILE).stat().st_size
    assert (report.bytes_before, report.bytes_after) == (before, after)
    assert abs((before - after) - expected) < 2048
    assert 500 <= report.kept <= 510  # the 500 ids and the few special tokens


def test_special_tokens_are_always_kept(folders: dict[str, Path], hf_tokenizer, tmp_path: Path) -> None:
    report = prune_vocabulary(folders["fp32"], [2000], tmp_path / "pruned")
    specials = {hf_tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")}
    assert specials <= set(report.special_ids)
    assert report.kept == len(specials | {2000})
    assert report.unk_id == hf_tokenizer.unk_token_id
    written = json.loads((tmp_path / "pruned" / VOCAB_REPORT_FILE).read_text())
    assert (written["kept"], written["old_vocab"]) == (report.kept, 30522)
    assert {p.name for p in folders["fp32"].iterdir()} | {VOCAB_REPORT_FILE} == {
        p.name for p in (tmp_path / "pruned").iterdir()
    }


def test_pruned_fp32_folder_quantizes(folders: dict[str, Path], tmp_path: Path) -> None:
    pruned = tmp_path / "pruned"
    prune_vocabulary(folders["fp32"], set(token_counts(folders["fp32"], KEPT_TEXTS)), pruned)
    int8 = quantize_onnx(pruned, tmp_path / "pruned-int8")
    fp32_vectors = OnnxEncoder(pruned, threads=1).encode(KEPT_TEXTS)
    int8_vectors = OnnxEncoder(int8, threads=1).encode(KEPT_TEXTS)
    assert np.sum(fp32_vectors * int8_vectors, axis=1).min() >= 0.98
    assert REMAP_NAME.encode() in (int8 / ONNX_MODEL_FILE).read_bytes()


def test_rejects_bad_arguments(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        prune_vocabulary(folders["fp32"], [5, 30522], tmp_path / "out")
    with pytest.raises(ValueError, match="out of range"):
        prune_vocabulary(folders["fp32"], [-1], tmp_path / "out")
    with pytest.raises(ValueError, match="out of range"):
        prune_vocabulary(folders["fp32"], [5], tmp_path / "out", unk_id=40000)
    prune_vocabulary(folders["fp32"], [5], tmp_path / "pruned")
    with pytest.raises(ValueError, match="already"):
        prune_vocabulary(tmp_path / "pruned", [5], tmp_path / "out")
    with pytest.raises(ValueError, match="outside the source folder"):
        prune_vocabulary(folders["fp32"], [5], folders["fp32"] / "inside")
    assert not (tmp_path / "out").exists()
