"""The pipeline's single-query thread policy (FAISS capped in whichever thread searches, batches untouched) and its
result building (hits equal an independent construction from the stored ids and docs)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import Hit, Pipeline, build_index_dir


class SpyIndex:
    """Wraps the stored FAISS index; records the OpenMP thread count in force at each search."""

    def __init__(self, index) -> None:
        self.index, self.d, self.ntotal, self.seen = index, index.d, index.ntotal, []

    def search(self, queries, k):
        self.seen.append(faiss.omp_get_max_threads())
        return self.index.search(queries, k)


@pytest.fixture
def pipeline_dir(tmp_path: Path, beir_dir: Path) -> Path:
    spec = IndexSpec("SQ8", vectors="none")  # the codes alone: the spy sees every search
    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=32), spec, tmp_path / "ix", show_progress=False)
    return tmp_path / "ix"


def spied(pipeline_dir: Path, **options) -> tuple[Pipeline, SpyIndex]:
    """A pipeline whose index, once set up, is swapped for a spy around it."""
    pipeline = Pipeline(FakeEncoder(dim=32), Pipeline.load(pipeline_dir).stored, **options)
    spy = SpyIndex(pipeline.stored.index)
    pipeline.stored = replace(pipeline.stored, index=spy)
    return pipeline, spy


def test_single_queries_search_on_one_thread_in_any_calling_thread(pipeline_dir: Path) -> None:
    pipeline, spy = spied(pipeline_dir)

    def from_worker() -> int:
        faiss.omp_set_num_threads(2)  # a fresh worker thread's own default team
        pipeline.search("vitamin bone", 5)
        pipeline.search_batch(["vitamin bone", "heart artery"], 5)
        return faiss.omp_get_max_threads()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(from_worker).result() == 2  # restored after the search
    assert spy.seen == [1, 2]  # one query: capped; a batch: the thread's default team


def test_the_cap_can_be_left_off_and_is_validated(pipeline_dir: Path) -> None:
    pipeline, spy = spied(pipeline_dir, single_query_threads=None)
    before = faiss.omp_get_max_threads()
    pipeline.search("vitamin bone", 5)
    assert spy.seen == [before]
    with pytest.raises(ValueError, match="single_query_threads"):
        spied(pipeline_dir, single_query_threads=0)


def test_hits_equal_an_independent_construction(pipeline_dir: Path, beir_dir: Path) -> None:
    """Ids, titles and snippets read back from the document store equal the corpus's own, position by position."""
    pipeline = Pipeline.load(pipeline_dir)
    corpus = load_beir(beir_dir).corpus
    vector = pipeline.encode_queries(["tumor cells chemotherapy"])
    scores, positions = pipeline.stored.index.search(vector, 100)  # k beyond the 60 documents: -1 pads to drop
    hits = pipeline.search("tumor cells chemotherapy", 100).hits
    want = [
        Hit(corpus[p].id, float(s), corpus[p].title, corpus[p].text[:300])
        for s, p in zip(scores[0], positions[0], strict=True)
        if p >= 0
    ]
    assert len(hits) == len(want) == 60
    assert [(h.id, h.title, h.snippet) for h in hits] == [(h.id, h.title, h.snippet) for h in want]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in want], atol=1e-6)
    assert all(type(h.score) is float for h in hits)  # JSON-ready Python floats, not numpy scalars


def test_batch_searches_are_capped_in_the_calling_thread_when_asked(pipeline_dir: Path) -> None:
    pipeline, spy = spied(pipeline_dir, batch_search_threads=1)

    def from_worker() -> int:
        faiss.omp_set_num_threads(2)
        pipeline.search_batch(["vitamin bone", "heart artery"], 5)
        pipeline.search("vitamin bone", 5)
        return faiss.omp_get_max_threads()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(from_worker).result() == 2  # restored after the search
    assert spy.seen == [1, 1]
    assert pipeline.describe()["batch_search_threads"] == 1
    with pytest.raises(ValueError, match="batch_search_threads"):
        spied(pipeline_dir, batch_search_threads=0)
