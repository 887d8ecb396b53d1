"""The search pipeline: building an index directory, timed search (single, batch, ,RFlat) against numpy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import Pipeline, build_index_dir, result_as_dict


@pytest.fixture
def index_dirs(tmp_path: Path, beir_dir: Path) -> dict[str, Path]:
    """A teacher (Flat, 128 d) and a compressed pipeline (PQ with exact re-ranking, 32 d) on the tiny dataset."""
    dataset = load_beir(beir_dir)
    dirs = {"teacher": tmp_path / "teacher", "compressed": tmp_path / "small"}
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), dirs["teacher"], show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), dirs["compressed"], show_progress=False)
    return dirs


def test_build_and_search_with_a_fake_encoder_equals_numpy_scores(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    encoder = FakeEncoder(dim=128)
    report = build_index_dir(dataset, encoder, IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    assert report.meta["bytes_per_vector"] == pytest.approx(128 * 4)
    assert report.meta["encoder"] == encoder.identity()
    assert report.meta["dataset"] == "tiny"
    pipeline = Pipeline.load(tmp_path / "ix")
    result = pipeline.search("vitamin calcium bone", k=5)
    docs = FakeEncoder(dim=128).encode([doc.full_text() for doc in dataset.corpus], kind="passage")
    scores = docs @ FakeEncoder(dim=128).encode(["vitamin calcium bone"])[0]
    order = np.argsort(-scores, kind="stable")
    assert (-np.diff(scores[order[:6]]) > 1e-5).all()  # a clear top 5: FAISS and numpy must agree on it
    assert [hit.id for hit in result.hits] == [dataset.corpus[p].id for p in order[:5]]
    np.testing.assert_allclose([hit.score for hit in result.hits], scores[order[:5]], atol=1e-5)
    assert result.hits[0].id.startswith("vitamin-")
    assert result.hits[0].title == dataset.corpus[order[0]].title
    assert result.timings.total_ms >= result.timings.encode_ms + result.timings.search_ms - 1e-6
    assert len(pipeline.search("vitamin", k=1000).hits) == 60  # k beyond the corpus returns what exists
    as_dict = result_as_dict(result)
    assert [hit["id"] for hit in as_dict["hits"]] == [hit.id for hit in result.hits]
    assert as_dict["timings"]["encode_ms"] == result.timings.encode_ms


def test_build_summary_reports_the_stored_meta(tmp_path: Path, beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    spec = IndexSpec("IVF4,Flat", search_params={"nprobe": 2})
    report = build_index_dir(dataset, FakeEncoder(dim=16), spec, tmp_path / "ix", show_progress=False)
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    summary = report.summary()
    assert summary["out"] == str(tmp_path / "ix")
    assert summary["documents"] == len(dataset.corpus) == 60
    assert summary["index"] == "IVF4,Flat"
    assert summary["search_params"] == {"nprobe": 2}
    assert summary["mode"] == "symmetric"
    assert summary["encoder"] == summary["doc_encoder"] == "fake"
    assert summary["index_bytes"] == (tmp_path / "ix" / "index.faiss").stat().st_size == meta["index_bytes"]
    assert summary["embeddings_from_cache"] is False
    assert summary["dataset"] == "tiny"


def test_tokenize_time_is_not_counted_as_encode_time(tmp_path: Path, beir_dir: Path) -> None:
    class SlowTokenizer(FakeEncoder):
        def encode_timed(self, texts, kind="query", batch_size=32):
            time.sleep(0.05)
            return self.encode(texts, kind, batch_size), 0.05

    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    stored = Pipeline.load(tmp_path / "ix").stored
    timings = Pipeline(SlowTokenizer(dim=16), stored).search("heart", 3).timings
    assert timings.tokenize_ms == pytest.approx(50.0)
    assert timings.encode_ms < 40.0
    assert timings.total_ms >= 50.0


def test_search_batch_encodes_the_queries_as_one_batch(index_dirs: dict[str, Path], assert_same_ranking) -> None:
    encoder = FakeEncoder(dim=128)
    pipeline = Pipeline(encoder, Pipeline.load(index_dirs["teacher"]).stored)
    queries = ["vitaminkey", "heart artery", "brain memory synapse"]
    batch = pipeline.search_batch(queries, 4)
    assert encoder.calls == [3]  # one batch of three, not three calls
    for got, query in zip(batch.hits, queries, strict=True):
        want = pipeline.search(query, 4).hits
        assert_same_ranking([h.id for h in got], [h.score for h in got], [h.id for h in want], [h.score for h in want])
    with pytest.raises(ValueError, match=r"queries\[1\]"):
        pipeline.search_batch(["fine", "  "], 4)


def test_pipeline_rflat_search_equals_faiss_with_a_k_factor_override(
    index_dirs: dict[str, Path], assert_same_ranking
) -> None:
    pipeline = Pipeline.load(index_dirs["compressed"], search_params={"k_factor": 2})
    assert pipeline.stored.index.k_factor == 2
    vectors = pipeline.encode_queries(["vitamin bone", "tumor cells", "neurons"])
    want_scores, want = pipeline.stored.index.search(vectors, 7)
    scores, positions = pipeline.search_vectors(vectors, 7)
    for row in range(len(vectors)):
        assert_same_ranking(positions[row].tolist(), scores[row], want[row].tolist(), want_scores[row])


def test_too_few_training_vectors_is_a_clear_error(tmp_path, beir_dir):
    with pytest.raises(ValueError, match=r"cannot train 'IVF256,Flat' on 60 vectors: .*at least as large"):
        build_index_dir(
            load_beir(beir_dir), FakeEncoder(dim=32), IndexSpec("IVF256,Flat"), tmp_path / "ix", show_progress=False
        )
    assert not (tmp_path / "ix").exists()
