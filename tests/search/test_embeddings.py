"""Corpus embeddings: cached by content (never by path), reused, re-encoded when damaged, resumed when interrupted."""

from __future__ import annotations

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from search.data.datasets import corpus_fingerprint, load_beir
from search.embeddings import embedding_cache_key, encode_corpus, load_cached_embeddings


def test_vectors_are_in_corpus_order_and_equal_a_direct_encode(beir_dir):
    corpus = load_beir(beir_dir).corpus
    result = encode_corpus(FakeEncoder(dim=16), corpus, chunk_size=7, show_progress=False)  # encoded longest first
    direct = FakeEncoder(dim=16).encode([doc.full_text() for doc in corpus], kind="passage")
    np.testing.assert_allclose(result.vectors, direct, atol=1e-6)
    loaded = load_cached_embeddings(result.key, len(corpus))
    assert loaded is not None
    assert loaded.from_cache
    np.testing.assert_array_equal(loaded.vectors, result.vectors)
    assert load_cached_embeddings(result.key, len(corpus) + 1) is None  # the wrong size is never trusted


def test_the_cache_key_names_content_and_settings_never_a_path(beir_dir):
    corpus_hash = corpus_fingerprint(load_beir(beir_dir).corpus)
    identity = {"type": "onnx", "name": "student", "fingerprint": "abc", "dim": 384, "path": "/a/student"}
    moved = {**identity, "path": "/elsewhere/student"}
    assert embedding_cache_key(identity, corpus_hash) == embedding_cache_key(moved, corpus_hash)
    assert embedding_cache_key({**identity, "fingerprint": "other"}, corpus_hash) != embedding_cache_key(
        identity, corpus_hash
    )
    assert embedding_cache_key(identity, "another corpus") != embedding_cache_key(identity, corpus_hash)


def test_embeddings_are_cached_and_reused(beir_dir):
    corpus = load_beir(beir_dir).corpus
    encoder = FakeEncoder(dim=16)
    first = encode_corpus(encoder, corpus, show_progress=False)
    calls = len(encoder.calls)
    second = encode_corpus(encoder, corpus, show_progress=False)
    assert second.from_cache
    assert not first.from_cache
    assert len(encoder.calls) == calls
    np.testing.assert_array_equal(first.vectors, second.vectors)
    third = encode_corpus(encoder, corpus[:-1], show_progress=False)
    assert not third.from_cache
    assert third.key != first.key


def test_damaged_cache_entry_is_re_encoded(beir_dir, isolated_cache):
    corpus = load_beir(beir_dir).corpus
    first = encode_corpus(FakeEncoder(dim=16), corpus, show_progress=False)
    (isolated_cache / "embeddings" / f"{first.key}.npy").write_bytes(b"not an array")
    again = encode_corpus(FakeEncoder(dim=16), corpus, show_progress=False)
    assert not again.from_cache
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)  # re-encoded, not read back


def test_interrupted_encoding_resumes_from_checkpoint(beir_dir, monkeypatch):
    corpus = load_beir(beir_dir).corpus

    class Flaky(FakeEncoder):
        def encode(self, texts, kind="query", batch_size=32):
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return super().encode(texts, kind, batch_size)

    flaky = Flaky(dim=16)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(flaky, corpus, chunk_size=10, show_progress=False, checkpoint_seconds=-1.0)  # every chunk
    resumed = FakeEncoder(dim=16)
    result = encode_corpus(resumed, corpus, chunk_size=10, show_progress=False)
    assert sum(resumed.calls) == len(corpus) - 30  # three chunks of ten were already done
    np.testing.assert_allclose(result.vectors, FakeEncoder(dim=16).encode([d.full_text() for d in corpus]), atol=1e-6)
