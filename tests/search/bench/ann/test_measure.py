import numpy as np
import pytest

import semsearch_common.timing as timing
from indexes.exact import exact_search
from indexes.faiss_index import IndexSpec, build_index
from indexes.ids import DocIdMap
from search.bench.ann import (
    EncodedQueries,
    EncoderRun,
    IndexBuildError,
    RunContext,
    bench_index,
    make_bench_spec,
    sweep_grid,
    time_batch_search,
    time_single_searches,
)
from search.evaluation.metrics import knn_recall, ndcg_at_k
from semsearch_common.timing import WARMUP_CALLS


class ScriptedIndex:
    """A stand-in FAISS index: each search moves a fake clock on by a scripted duration and returns the query's
    row number as its top position, so the timing loop's bookkeeping can be checked exactly."""

    def __init__(self, durations: dict[int, list[float]], d: int = 4) -> None:
        self.d, self.now, self.calls = d, 0.0, []
        self.durations = {row: list(times) for row, times in durations.items()}

    def clock(self) -> float:
        return self.now

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [int(q[0]) for q in queries]
        self.calls.append(rows)
        self.now += sum(self.durations[row].pop(0) for row in rows)
        return np.zeros((len(rows), k), np.float32), np.array([[row] * k for row in rows], dtype=np.int64)


def test_single_searches_keep_each_querys_fastest_repeat(monkeypatch):
    # query r has id r in its first coordinate; warm-up searches cost 0, then one duration per repeat
    durations = {0: [0, 3.0, 1.0, 2.0], 1: [0, 1.0, 5.0, 4.0], 2: [0, 2.0, 2.0, 0.5], 3: [7.0, 8.0, 6.0]}
    index = ScriptedIndex(durations)
    monkeypatch.setattr(timing.time, "perf_counter", index.clock)
    queries = np.zeros((4, 4), np.float32)
    queries[:, 0] = np.arange(4)
    seconds, top = time_single_searches(index.search, queries, k=2, repeats=3)
    assert WARMUP_CALLS == 3
    assert index.calls == [[0], [1], [2]] + [[0], [1], [2], [3]] * 3  # warm-up on the first 3, then one at a time
    np.testing.assert_allclose(seconds, [1.0, 1.0, 0.5, 6.0])  # best of 3 per query, not per pass
    np.testing.assert_array_equal(top, [[0, 0], [1, 1], [2, 2], [3, 3]])


def test_batch_search_keeps_the_fastest_pass(monkeypatch):
    index = ScriptedIndex({0: [1.0, 2.0], 1: [1.0, 0.5], 2: [3.0, 0.5]})
    monkeypatch.setattr(timing.time, "perf_counter", index.clock)
    queries = np.zeros((3, 4), np.float32)
    queries[:, 0] = np.arange(3)
    assert time_batch_search(index.search, queries, k=1, repeats=2, batch=2) == pytest.approx(3.0)  # passes of 5 and 3
    assert index.calls == [[0, 1], [2], [0, 1], [2]]


def test_single_searches_on_flat_find_the_exact_top_k(unit_vectors, assert_same_top_k):
    docs, queries = unit_vectors(500, 16, seed=0), unit_vectors(30, 16, seed=1)
    index = build_index(docs, IndexSpec("Flat")).index
    seconds, top = time_single_searches(index.search, queries, k=10, repeats=2)
    assert seconds.shape == (30,)
    assert (seconds > 0).all()
    exact_scores = queries @ docs.T
    found_scores = np.take_along_axis(exact_scores, top, axis=1)
    assert_same_top_k(top, found_scores, exact_scores, eps=1e-5)


def _context_and_run(unit_vectors, n_docs=400, n_queries=20, dim=16, repeats=1):
    docs, vectors = unit_vectors(n_docs, dim, seed=2), unit_vectors(n_queries, dim, seed=3)
    spec = make_bench_spec(["s=fake:16"], repeats=repeats, train_sample=n_docs, show_progress=False)
    query_ids = [f"q{i}" for i in range(n_queries)]
    doc_ids = DocIdMap([f"d{i}" for i in range(n_docs)])
    _, exact = exact_search(vectors, docs, 10)
    qrels = {qid: {f"d{exact[i][0]}": 1, f"d{exact[i][1]}": 2} for i, qid in enumerate(query_ids)}
    teacher_top = np.roll(exact, 1, axis=0).tolist()  # a "teacher" that disagrees with this encoder
    context = RunContext(spec, query_ids, qrels, doc_ids, teacher_top)
    encoded = EncodedQueries(vectors, np.full(n_queries, 0.002), batch_seconds=0.01)
    run = EncoderRun(spec.encoders[0], docs, encoded, exact.tolist(), "fp32", model_bytes=1234)
    return context, run, exact, docs, vectors


def test_bench_sweeps_a_rescored_one_bit_index_over_k_factor_and_query_bits(unit_vectors):
    context, run, exact, docs, vectors = _context_and_run(unit_vectors)
    grid = sweep_grid("RaBitQ,RFlat", {"k_factor": (1, 16), "qb": (4, 8)})
    rows = bench_index(context, run, "RaBitQ,RFlat", grid, lambda info: None)
    by_params = {(r["params"]["k_factor"], r["params"]["qb"]): r for r in rows}
    assert set(by_params) == {(1, 4), (1, 8), (16, 4), (16, 8), (4, 8)}  # the cross product and the default
    for qb in (4, 8):  # rescoring 16 x k candidates recovers what the 1-bit codes alone miss
        assert by_params[(16, qb)]["recall@10_vs_exact"] >= by_params[(1, qb)]["recall@10_vs_exact"]
    assert by_params[(16, 8)]["recall@10_vs_exact"] >= 0.9
    assert all(r["default_params"] == (r["params"] == {"k_factor": 4, "qb": 8}) for r in rows)


def test_bench_sweeps_oversampling_from_the_vector_file(unit_vectors):
    """A lossy index is rescored from fp16 rows by default (oversample 4), and the sweep reaches it; oversample 1
    rescores the codes' own top 10 (their set is the codes', reordered)."""
    context, run, exact, docs, vectors = _context_and_run(unit_vectors)
    grid = sweep_grid("RaBitQ", {"oversample": (1, 20)})
    assert grid == [({"qb": 8, "oversample": 1}, False), ({"qb": 8, "oversample": 20}, False),
                    ({"qb": 8, "oversample": 4}, True)]  # fmt: skip
    rows = {r["params"]["oversample"]: r for r in bench_index(context, run, "RaBitQ", grid, lambda info: None)}
    assert rows[20]["recall@10_vs_exact"] >= 0.95 > rows[1]["recall@10_vs_exact"]
    assert rows[1]["recall@10_vs_exact"] <= rows[4]["recall@10_vs_exact"] <= rows[20]["recall@10_vs_exact"]
    assert sweep_grid("RaBitQ,RFlat", {"oversample": (1, 20)}) == [({"k_factor": 4, "qb": 8}, True)]  # not for RFlat


def test_bench_index_rows_score_against_exact_search(unit_vectors):
    context, run, exact, docs, vectors = _context_and_run(unit_vectors)
    scores = vectors @ docs.T
    ranked = np.sort(scores, axis=1)[:, ::-1]
    assert (ranked[:, 9] - ranked[:, 10] > 1e-4).all()  # no near-tie at rank 10: top-10 sets are well defined
    advanced = []
    rows = bench_index(context, run, "IVF8,Flat", sweep_grid("IVF8,Flat", {"nprobe": (1, 8)}), advanced.append)
    assert [r["params"] for r in rows] == [{"nprobe": 1}, {"nprobe": 8}]
    assert advanced == ["s IVF8,Flat nprobe=1", "s IVF8,Flat nprobe=8"]
    full = rows[1]  # probing every list is exact search
    assert full["recall@10_vs_exact"] == 1.0
    assert full["recall@10_vs_teacher"] == pytest.approx(knn_recall(exact.tolist(), context.teacher_top, 10))
    ranking = {qid: [f"d{p}" for p in exact[i]] for i, qid in enumerate(context.query_ids)}
    assert full["ndcg@10"] == pytest.approx(ndcg_at_k(ranking, context.qrels, 10))
    assert full["recall@100"] == 1.0  # both judged documents are in the exact top-2 of every query
    assert rows[0]["recall@10_vs_exact"] <= full["recall@10_vs_exact"]
    for row in rows:
        assert row["encode_ms_p50"] == pytest.approx(2.0)
        assert row["total_ms_p50"] > row["encode_ms_p50"]
        assert row["total_ms_p95"] >= row["total_ms_p50"]
        assert row["bytes_per_vector"] == pytest.approx(16 * 4 + 8, abs=1)  # a float32 vector and its int64 id
        assert (row["model_bytes"], row["dim"], row["queries"], row["precision"]) == (1234, 16, 20, "fp32")
        assert row["default_params"] == (row["params"] == {"nprobe": 1})


def test_bench_index_raises_index_build_error_when_training_cannot_work(unit_vectors):
    context, run, *_ = _context_and_run(unit_vectors, n_docs=50)
    with pytest.raises(IndexBuildError, match="256"):
        bench_index(context, run, "IVF256,Flat", sweep_grid("IVF256,Flat", {}), lambda info: None)
