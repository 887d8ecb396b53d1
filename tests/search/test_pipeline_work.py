"""Bounded work in the pipeline: micro-batches with checkpoints, a k per query, token and candidate counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import Pipeline, build_index_dir

QUERIES = [
    "vitaminkey",
    "heart artery",
    "brain memory synapse",
    "tumor cells chemotherapy",
    "bone calcium",
    "virus vaccine immune",
    "blood pressure",
    "gene expression mice",
    "cardiac failure risk",
    "neurons cortex",
]


@pytest.fixture
def compressed_dir(tmp_path: Path, beir_dir: Path) -> Path:
    """PQ with exact re-ranking (k_factor 4): its candidate lists depend on k."""
    out = tmp_path / "small"
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), out, show_progress=False)
    return out


def with_encoder(index_dir: Path) -> tuple[Pipeline, FakeEncoder]:
    encoder = FakeEncoder(dim=32)
    return Pipeline(encoder, Pipeline.load(index_dir).stored), encoder


def test_micro_batches_equal_one_shot(compressed_dir: Path, assert_same_ranking) -> None:
    pipeline, encoder = with_encoder(compressed_dir)
    one_shot = pipeline.search_batch(QUERIES, 5)
    assert encoder.calls == [10]
    encoder.calls.clear()
    micro = pipeline.search_batch(QUERIES, 5, micro_batch=3)
    assert encoder.calls == [3, 3, 3, 1]
    for got, want in zip(micro.hits, one_shot.hits, strict=True):
        assert_same_ranking([h.id for h in got], [h.score for h in got], [h.id for h in want], [h.score for h in want])
    t = micro.timings
    assert t.total_ms >= t.tokenize_ms + t.encode_ms + t.search_ms + t.rescore_ms - 1e-6
    assert t.rescore_ms > 0


def test_a_checkpoint_runs_before_each_micro_batch_and_can_stop_the_work(compressed_dir: Path) -> None:
    pipeline, encoder = with_encoder(compressed_dir)
    seen: list[int] = []

    class Stop(Exception):
        pass

    def checkpoint() -> None:
        seen.append(len(encoder.calls))
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        pipeline.search_batch(QUERIES, 5, micro_batch=3, checkpoint=checkpoint)
    assert seen == [0, 1, 2]
    assert encoder.calls == [3, 3]  # stopped before the third micro-batch
    with pytest.raises(ValueError, match="micro_batch must be >= 1"):
        pipeline.search_batch(QUERIES, 5, micro_batch=0)


def test_a_k_per_query_gives_each_query_its_own_search(compressed_dir: Path, assert_same_ranking) -> None:
    pipeline, encoder = with_encoder(compressed_dir)
    ks = [1, 30, 5, 30, 5, 2, 30, 1, 9, 5]
    mixed = pipeline.search_each(QUERIES, ks)
    assert encoder.calls == [10]  # encoded once
    for query, k, hits in zip(QUERIES, ks, mixed.hits, strict=True):
        alone = pipeline.search(query, k).hits
        assert len(hits) == k
        assert_same_ranking(
            [h.id for h in hits], [h.score for h in hits], [h.id for h in alone], [h.score for h in alone]
        )
    with pytest.raises(ValueError, match="one k per query"):
        pipeline.search_each(QUERIES, [5])
    with pytest.raises(ValueError, match="k must be >= 1"):
        pipeline.search_each(["a", "b"], [3, 0])


def test_counts_of_tokens_and_rescore_candidates(compressed_dir: Path, tmp_path: Path, beir_dir: Path) -> None:
    pipeline, encoder = with_encoder(compressed_dir)
    assert pipeline.count_tokens(["vitamin bone", "a b c d"]) == [2, 4]
    assert encoder.calls == []
    assert pipeline.k_factor == 4.0
    assert pipeline.rescore_candidates(10) == 40
    assert pipeline.rescore_candidates(1000) == 60  # no more candidates than the 60 documents
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=32), IndexSpec("Flat"), tmp_path / "flat", show_progress=False)
    flat = Pipeline.load(tmp_path / "flat")
    assert flat.k_factor is None
    assert flat.rescore_candidates(10) == 0


def test_oversample_is_refused_where_nothing_can_be_rescored_from_disk(compressed_dir: Path, tmp_path: Path,
                                                                       beir_dir: Path) -> None:  # fmt: skip
    """`,RFlat` re-ranks from RAM (k_factor); an index built with --vectors none keeps no file; both say so."""
    with pytest.raises(ValueError, match="does not apply to 'PQ4x4,RFlat'"):
        Pipeline.load(compressed_dir, search_params={"oversample": 4})
    spec = IndexSpec("SQ8", vectors="none")
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=32), spec, tmp_path / "bare", show_progress=False)
    bare = Pipeline.load(tmp_path / "bare")
    assert bare.search_params == {} and bare.rescore_source is None  # no default oversample without the file
    with pytest.raises(ValueError, match="which this index does not keep"):
        bare.search("vitamin bone", 5, oversample=4)
    with pytest.raises(ValueError, match="oversample must be a number >= 1"):
        Pipeline.load(compressed_dir).rescore_candidates(10, oversample=0.5)
    kept = IndexSpec("SQ8")
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=32), kept, tmp_path / "kept", show_progress=False)
    pipeline = Pipeline.load(tmp_path / "kept")
    assert (pipeline.rescore_source, pipeline.k_factor, pipeline.rescore_candidates(10, 3)) == ("vector_file", 4, 30)
