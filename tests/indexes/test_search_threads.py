"""FAISS's OpenMP team for single-query searches: capped in the thread that searches (main or a worker), restored
afterwards, left alone for batches, and the results are the same either way."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from indexes.faiss_index import (
    SINGLE_QUERY_THREADS,
    IndexSpec,
    apply_search_params,
    build_index,
    openmp_threads,
    search_index,
    search_threads,
)
from indexes.rescore import Rescorer


class SpyIndex:
    """Stands in for a FAISS index and records the OpenMP thread count in force when `search` runs."""

    def __init__(self, index) -> None:
        self.index, self.d, self.seen = index, index.d, []

    def search(self, queries, k):
        self.seen.append(faiss.omp_get_max_threads())
        return self.index.search(queries, k)


@pytest.fixture
def two_threads():
    """The calling thread's default team has two threads, whatever the machine (restored afterwards)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    yield
    faiss.omp_set_num_threads(before)


def test_openmp_threads_caps_and_restores_the_calling_thread(two_threads) -> None:
    with openmp_threads(1) as inside:
        assert inside == 1 == faiss.omp_get_max_threads()
    assert faiss.omp_get_max_threads() == 2
    for no_change in (None, 2, 8):  # never raises the count, None leaves it
        with openmp_threads(no_change) as inside:
            assert inside == 2 == faiss.omp_get_max_threads()
    with pytest.raises(ValueError, match=">= 1"):
        with openmp_threads(0):
            pass


def test_single_queries_run_on_one_thread_batches_on_the_default_team(unit_vectors, two_threads) -> None:
    spy = SpyIndex(build_index(unit_vectors(200, 16, seed=1), IndexSpec("SQ8")).index)
    queries = unit_vectors(5, 16, seed=2)
    search_index(spy, queries[:1], 3)
    search_index(spy, queries, 3)
    search_index(spy, queries[:1], 3, single_query_threads=None)
    assert spy.seen == [SINGLE_QUERY_THREADS, 2, 2]
    assert SINGLE_QUERY_THREADS == 1
    assert faiss.omp_get_max_threads() == 2
    assert search_threads(1) == 1
    assert search_threads(2) is None
    assert search_threads(1, None) is None
    with pytest.raises(ValueError, match="single_query_threads"):
        search_index(spy, queries[:1], 3, single_query_threads=0)


def test_the_cap_applies_in_worker_threads_whose_default_is_their_own(unit_vectors) -> None:
    """libgomp keeps thread counts per thread: a worker starts with the process default, not the main thread's."""
    spy = SpyIndex(build_index(unit_vectors(200, 16, seed=1), IndexSpec("Flat")).index)
    query = unit_vectors(1, 16, seed=2)

    def in_worker() -> tuple[int, int]:
        faiss.omp_set_num_threads(3)  # this worker's own default
        search_index(spy, query, 3)
        return spy.seen[-1], faiss.omp_get_max_threads()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(in_worker).result() == (1, 3)


@pytest.mark.parametrize("factory", ["Flat", "SQ8", "HNSW16", "IVF8,Flat", "SQ8,RFlat"])
def test_results_do_not_depend_on_the_thread_settings(factory, unit_vectors, assert_same_top_k, two_threads) -> None:
    vectors = unit_vectors(600, 24, seed=3)
    index = build_index(vectors, IndexSpec(factory)).index
    if factory.startswith("IVF"):
        apply_search_params(index, {"nprobe": 8})  # every list: exact, so numpy can check it
    split = Rescorer.of_refine(index)
    for query in unit_vectors(6, 24, seed=4):
        row = query[None, :]
        if split is not None:
            one, team = split.search(row, 10), split.search(row, 10, single_query_threads=None)
            got, want = (one.scores, one.positions), (team.scores, team.positions)
        else:
            got, want = search_index(index, row, 10), search_index(index, row, 10, single_query_threads=None)
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        if factory in ("Flat", "IVF8,Flat", "SQ8,RFlat"):  # exact scores: both against numpy
            assert_same_top_k(got[1], got[0], row @ vectors.T)
            assert_same_top_k(want[1], want[0], row @ vectors.T)
        else:  # approximate scores: the two settings agree at every rank clearly apart from its neighbours
            gaps = np.append(-np.diff(want[0][0]), np.inf)
            clear = [r for r in range(10) if gaps[r] > 1e-5 and (r == 0 or gaps[r - 1] > 1e-5)]
            assert len(clear) > 5
            assert list(got[1][0][clear]) == list(want[1][0][clear])
