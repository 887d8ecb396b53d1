"""The torch-free static encoder: vectors equal an independent numpy reference, loading, identity, bad folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compression.encoders import Encoder, TimedEncoder, load_encoder, load_encoder_from_identity
from compression.static import STATIC_CONFIG_FILE, STATIC_TABLE_FILE, StaticEncoder

MAX_SEQ_LENGTH = 16  # the static_folder fixture's truncation: 14 tokens once [CLS] and [SEP] are set aside
TEXTS = [
    "Vitamin D lowers the risk of fractures in older adults.",
    "cells",
    "",
    "   ",
    "heart " * 40,
    "Brain cortex, memory and synapse: a REVIEW of neurons!",
]


def reference_vectors(teacher_dir: Path, table: np.ndarray, texts: list[str]) -> np.ndarray:
    """Token ids from transformers' tokenizer (no special tokens, the first max_seq_length - 2 kept; [UNK] for a
    text without tokens), rows summed and normalised in float64."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    out = []
    for text in texts:
        ids = tokenizer(text.strip(), add_special_tokens=False)["input_ids"][: MAX_SEQ_LENGTH - 2]
        ids = ids or [tokenizer.unk_token_id]
        vector = table[ids].astype(np.float64).sum(axis=0)
        out.append(vector / np.linalg.norm(vector))
    return np.asarray(out)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_encode_matches_a_numpy_reference(static_folder, tiny_teacher, random_table, batch_size):
    encoder = StaticEncoder(static_folder)
    expected = reference_vectors(tiny_teacher, random_table, TEXTS)
    vectors = encoder.encode(TEXTS, batch_size=batch_size)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), random_table.shape[1])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_single_text_fast_path_matches_the_reference(static_folder, tiny_teacher, random_table):
    encoder = StaticEncoder(static_folder)
    expected = reference_vectors(tiny_teacher, random_table, TEXTS)
    for text, row in zip(TEXTS, expected, strict=True):
        np.testing.assert_allclose(encoder.encode([text])[0], row, atol=1e-5)
        np.testing.assert_allclose(encoder.encode_one(text), row, atol=1e-5)


def test_truncation_keeps_the_first_tokens(static_folder):
    encoder = StaticEncoder(static_folder)
    words = "heart brain cells " * 10
    np.testing.assert_allclose(encoder.encode([words]), encoder.encode([words + " vitamin tumor"]), atol=1e-6)
    assert not np.allclose(encoder.encode(["heart brain"]), encoder.encode(["heart brain vitamin"]), atol=1e-3)


def test_encode_timed_splits_tokenising(static_folder):
    encoder = StaticEncoder(static_folder)
    assert isinstance(encoder, Encoder)
    assert isinstance(encoder, TimedEncoder)
    for texts in (TEXTS, TEXTS[:1]):
        vectors, tokenize_seconds = encoder.encode_timed(texts, batch_size=2)
        np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-6)
        assert tokenize_seconds > 0.0
    assert encoder.encode([]).shape == (0, encoder.dim)
    with pytest.raises(ValueError, match="unknown text kind"):
        encoder.encode(TEXTS[:1], kind="doc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(TEXTS, batch_size=0)


def test_identity_and_loading(static_folder, random_table):
    encoder = load_encoder(str(static_folder))
    assert isinstance(encoder, StaticEncoder)
    identity = encoder.identity()
    assert identity["type"] == "static"
    assert identity["precision"] == "fp32"
    assert identity["dim"] == random_table.shape[1]
    assert identity["max_seq_length"] == MAX_SEQ_LENGTH
    assert identity["path"] == str(static_folder.resolve())
    assert len(identity["fingerprint"]) > 16
    assert isinstance(load_encoder(f"student:{static_folder}"), StaticEncoder)
    again = load_encoder_from_identity({**identity, "name": "mine"})
    assert isinstance(again, StaticEncoder)
    assert again.name == "mine"
    np.testing.assert_allclose(again.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    assert encoder.model_bytes() > random_table.nbytes


def test_bad_folders_name_the_file(static_folder, tmp_path):
    with pytest.raises(ValueError, match=STATIC_CONFIG_FILE):
        StaticEncoder(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(static_folder, broken)
    (broken / STATIC_TABLE_FILE).unlink()
    with pytest.raises(ValueError, match=STATIC_TABLE_FILE):
        StaticEncoder(broken)
    np.save(broken / STATIC_TABLE_FILE, np.zeros((3, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=STATIC_TABLE_FILE):
        StaticEncoder(broken)
    config = json.loads((static_folder / STATIC_CONFIG_FILE).read_text())
    (broken / STATIC_CONFIG_FILE).write_text(json.dumps({**config, "precision": "int4"}))
    with pytest.raises(ValueError, match=rf"{STATIC_CONFIG_FILE}.*precision"):
        StaticEncoder(broken)
    (broken / STATIC_CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=STATIC_CONFIG_FILE):
        StaticEncoder(broken)
    shutil.copyfile(static_folder / STATIC_CONFIG_FILE, broken / STATIC_CONFIG_FILE)
    shutil.copyfile(static_folder / STATIC_TABLE_FILE, broken / STATIC_TABLE_FILE)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="tokenizer.json"):
        StaticEncoder(broken)


def test_the_query_path_never_imports_torch(static_folder):
    script = (
        "import sys\n"
        "from compression.encoders import load_encoder\n"
        "from compression.static import StaticEncoder\n"
        f"encoder = load_encoder({str(static_folder)!r})\n"
        "assert isinstance(encoder, StaticEncoder)\n"
        "encoder.encode(['vitamin d and bones'])\n"
        "encoder.encode(['a', 'b c', ''], batch_size=2)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
