import math

import numpy as np
import pytest

from search.evaluation.metrics import knn_recall, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_hand_computed_graded():
    qrels = {"q": {"a": 2, "b": 1, "z": 0}}
    ranking = {"q": ["x", "b", "a"]}
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(dcg / idcg)


def test_ndcg_perfect_and_cutoff_and_missing_query():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert ndcg_at_k({"q1": ["a"], "q2": ["b"]}, qrels, 10) == pytest.approx(1.0)
    # q2 has its relevant doc at rank 2 but k=1 cuts it; q1 missing from the run scores 0
    assert ndcg_at_k({"q2": ["x", "b"]}, qrels, 1) == 0.0
    assert ndcg_at_k({"q1": ["a"]}, qrels, 10) == pytest.approx(0.5)


def test_recall_and_mrr_hand_computed():
    qrels = {"q1": {"a": 1, "b": 1, "c": 0}, "q2": {"d": 3}}
    ranking = {"q1": ["c", "a", "x"], "q2": ["y", "z", "d"]}
    assert recall_at_k(ranking, qrels, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert recall_at_k(ranking, qrels, 3) == pytest.approx((0.5 + 1.0) / 2)
    assert mrr_at_k(ranking, qrels, 10) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert mrr_at_k(ranking, qrels, 2) == pytest.approx((1 / 2 + 0) / 2)


def test_knn_recall():
    found = [["a", "b", "c"], ["d", "e", "f"]]
    exact = [["a", "c", "x"], ["f", "g", "h"]]
    assert knn_recall(found, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert knn_recall(found, exact, 1) == pytest.approx(0.5)
    assert knn_recall(found, [["a", "b", "c"], []], 3) == pytest.approx((1.0 + 1.0) / 2)  # nothing to find: 1
    with pytest.raises(ValueError, match="queries"):
        knn_recall(found, exact[:1], 3)


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="qrels are empty"):
        ndcg_at_k({}, {}, 10)
    with pytest.raises(ValueError, match="no queries"):
        knn_recall([], [], 10)
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_recall([["a"]], [["a"]], 0)


def test_cross_check_with_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(7)
    docs = [f"d{i}" for i in range(60)]
    qrels, run, ranking = {}, {}, {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.choice(docs, size=int(rng.integers(1, 6)), replace=False)
        qrels[qid] = {d: int(rng.integers(0, 4)) for d in judged}
        qrels[qid][judged[0]] = max(1, qrels[qid][judged[0]])
        order = rng.permutation(docs)[:30]
        scores = np.sort(rng.random(30))[::-1]  # distinct scores, so trec_eval keeps our order
        run[qid] = {d: float(s) for d, s in zip(order, scores, strict=False)}
        ranking[qid] = list(order)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"})
    ref = evaluator.evaluate(run)
    assert ndcg_at_k(ranking, qrels, 10) == pytest.approx(np.mean([v["ndcg_cut_10"] for v in ref.values()]), abs=1e-9)
    assert recall_at_k(ranking, qrels, 100) == pytest.approx(np.mean([v["recall_100"] for v in ref.values()]), abs=1e-9)
    # trec_eval's recip_rank has no cutoff; with rank <= 30 runs, MRR@30 must equal it
    assert mrr_at_k(ranking, qrels, 30) == pytest.approx(np.mean([v["recip_rank"] for v in ref.values()]), abs=1e-9)
