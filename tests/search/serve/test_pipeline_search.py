"""HANDOFF, not a server test: these test `search.pipeline` (timed search, batching, ,RFlat search parameters) and
belong in tests/search/test_pipeline.py; they were in the server tests. Kept here, running, until they are moved."""

from __future__ import annotations

import time

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import Pipeline, build_index_dir


@pytest.fixture
def index_dirs(tmp_path, beir_dir):
    """A teacher (Flat, 128 d) and a compressed pipeline (PQ with exact re-ranking, 32 d) on the tiny dataset."""
    dataset = load_beir(beir_dir)
    dirs = {"teacher": tmp_path / "teacher", "compressed": tmp_path / "small"}
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), dirs["teacher"], show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), dirs["compressed"], show_progress=False)
    return dirs


def test_tokenize_time_is_not_counted_as_encode_time(tmp_path, beir_dir):
    class SlowTokenizer(FakeEncoder):
        def encode_timed(self, texts, kind="query", batch_size=32):
            time.sleep(0.05)
            return self.encode(texts, kind, batch_size), 0.05

    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    stored = Pipeline.load(tmp_path / "ix").stored
    timings = Pipeline(SlowTokenizer(dim=16), stored).search("heart", 3).timings
    assert timings.tokenize_ms == pytest.approx(50.0)
    assert timings.encode_ms < 40.0 and timings.total_ms >= 50.0


def test_search_batch_encodes_the_queries_as_one_batch(index_dirs):
    encoder = FakeEncoder(dim=32)
    pipeline = Pipeline(encoder, Pipeline.load(index_dirs["compressed"]).stored)
    pipeline.search_batch(["vitaminkey", "heart artery", "brain memory synapse"], 4)
    assert encoder.calls == [3]  # one batch of three, not three calls


def test_pipeline_rflat_search_equals_faiss_with_a_k_factor_override(index_dirs):
    pipeline = Pipeline.load(index_dirs["compressed"], search_params={"k_factor": 2})
    assert pipeline.stored.index.k_factor == 2
    vectors = pipeline.encode_queries(["vitamin bone", "tumor cells", "neurons"])
    want_scores, want = pipeline.stored.index.search(vectors, 7)
    scores, positions = pipeline.search_vectors(vectors, 7)
    np.testing.assert_array_equal(positions, want)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
