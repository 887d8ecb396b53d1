"""The table's init: each token's row equals an independent forward of the teacher on [CLS] token [SEP]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.static import input_embeddings, token_vectors
from compression.static.token_init import special_tokens_around, teacher_lowercases, teacher_tokenizer_file

SAMPLE_IDS = [0, 1, 100, 101, 102, 103, 999, 2000, 7592, 15000, 30521]
WORDS = ["vitamin", "heart", "brain", "cells", "cancer"]


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def reference_rows(teacher_dir, token_ids) -> np.ndarray:
    """transformers' BertModel on [CLS] t [SEP], one token at a time, last hidden states averaged (the tiny
    teacher's Pooling is the mean over all three positions)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    model = AutoModel.from_pretrained(str(teacher_dir)).eval()
    rows = []
    with torch.no_grad():
        for token in token_ids:
            ids = torch.tensor([[tokenizer.cls_token_id, token, tokenizer.sep_token_id]])
            rows.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0).numpy())
    return np.asarray(rows)


def test_rows_equal_an_independent_forward(tiny_teacher, vocab_size):
    table = token_vectors(tiny_teacher, batch_size=4096, autocast=False, show_progress=False)
    assert table.shape == (vocab_size, 32)
    assert table.dtype == np.float32
    np.testing.assert_allclose(table[SAMPLE_IDS], reference_rows(tiny_teacher, SAMPLE_IDS), rtol=1e-4, atol=1e-5)
    subset = token_vectors(tiny_teacher, batch_size=3, autocast=False, show_progress=False, token_ids=SAMPLE_IDS)
    np.testing.assert_allclose(subset, table[SAMPLE_IDS], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("teacher", ["tiny_teacher", "tiny_dense_teacher"])
def test_normalised_rows_are_the_teachers_vectors_of_one_token_words(teacher, request):
    """Through every module (a Dense included): a one-token word's row, normalised, is the teacher's vector."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    teacher_dir = request.getfixturevalue(teacher)
    tokenizer = Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads to 128
    ids = [tokenizer.encode(word, add_special_tokens=False).ids for word in WORDS]
    assert all(len(one) == 1 for one in ids)
    rows = token_vectors(teacher_dir, autocast=False, show_progress=False, token_ids=[one[0] for one in ids])
    expected = SentenceTransformer(str(teacher_dir), device="cpu").encode(WORDS, normalize_embeddings=True)
    assert rows.shape == expected.shape
    np.testing.assert_allclose(rows / np.linalg.norm(rows, axis=1, keepdims=True), expected, atol=1e-5)


def test_bf16_autocast_stays_close(tiny_teacher):
    exact = token_vectors(tiny_teacher, autocast=False, show_progress=False, token_ids=SAMPLE_IDS)
    fast = token_vectors(tiny_teacher, autocast=True, show_progress=False, token_ids=SAMPLE_IDS)
    cosines = np.sum(exact * fast, axis=1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(fast, axis=1)
    assert cosines.min() > 0.99


def test_bad_token_ids_are_refused(tiny_teacher, vocab_size):
    with pytest.raises(ValueError, match="token ids"):
        token_vectors(tiny_teacher, show_progress=False, token_ids=[vocab_size])
    with pytest.raises(ValueError, match="batch_size"):
        token_vectors(tiny_teacher, batch_size=0, show_progress=False)


def test_input_embeddings(tiny_teacher, tiny_dense_teacher, vocab_size):
    from transformers import AutoModel

    weights = AutoModel.from_pretrained(str(tiny_teacher)).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(input_embeddings(tiny_teacher), weights[:vocab_size], atol=0)
    with pytest.raises(ValueError, match="teacher-tokens"):
        input_embeddings(tiny_dense_teacher)


def test_tokenizer_facts(tiny_teacher, tmp_path):
    from tokenizers import Tokenizer

    assert special_tokens_around(Tokenizer.from_file(str(tiny_teacher / "tokenizer.json"))) == ([101], [102])
    assert teacher_lowercases(tiny_teacher) is False
    with pytest.raises(ValueError, match="tokenizer.json"):
        teacher_tokenizer_file(tmp_path)


@pytest.mark.slow
def test_real_teacher_rows_are_its_vectors_of_one_token_words():
    """all-mpnet-base-v2 (<s> token </s>, no Dense): normalised rows equal the teacher's own vectors."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from compression.models import resolve_model

    teacher_dir = resolve_model("teacher").path
    tokenizer = Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))
    tokenizer.no_padding()
    ids = [tokenizer.encode(word, add_special_tokens=False).ids for word in WORDS]
    assert all(len(one) == 1 for one in ids)
    model = SentenceTransformer(str(teacher_dir), device="cpu", local_files_only=True)
    rows = token_vectors(
        teacher_dir, autocast=False, show_progress=False, token_ids=[one[0] for one in ids], model=model
    )
    assert rows.shape == (len(WORDS), 768)
    expected = model.encode(WORDS, normalize_embeddings=True)
    np.testing.assert_allclose(rows / np.linalg.norm(rows, axis=1, keepdims=True), expected, atol=1e-4)
