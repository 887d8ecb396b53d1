"""The compact-index rule: the smallest candidate whose recall@10 vs exact search (rescored from fp16 rows) reaches
the target on held-out queries; checked against an independent computation of each candidate's recall."""

from __future__ import annotations

import numpy as np
import pytest

from indexes.choice import ChoiceRule, candidate_factories, choose_index
from indexes.exact import exact_search
from indexes.faiss_index import IndexSpec, apply_search_params, build_index


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 64)).astype(np.float32)
    docs = centres[rng.integers(0, 40, 3000)] + 0.4 * rng.standard_normal((3000, 64)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[rng.choice(3000, 80, replace=False)] + 0.2 * rng.standard_normal((80, 64)).astype(np.float32)
    return docs, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def independent_recall(docs, queries, factory, params) -> float:
    """Recall@10 of `factory` with `params`: its top 10 x oversample by the codes, re-ranked by exact fp16 scores."""
    index = build_index(docs, IndexSpec(factory)).index
    apply_search_params(index, params)
    _, truth = exact_search(queries, docs, 10)
    _, candidates = index.search(queries, int(10 * params["oversample"]))
    rows = docs.astype(np.float16).astype(np.float32)
    hits = 0.0
    for i, cand in enumerate(candidates):
        cand = cand[cand >= 0]
        top = cand[np.argsort(-(rows[cand] @ queries[i]))[:10]]
        hits += len(set(top.tolist()) & set(truth[i].tolist())) / 10
    return hits / len(queries)


def test_the_smallest_candidate_that_reaches_the_target_is_chosen(corpus):
    docs, queries = corpus
    choice = choose_index(docs, queries, ChoiceRule(target=0.97))
    measured = [t for t in choice.tried if "recall" in t]
    factories = list(dict.fromkeys(t["factory"] for t in measured))
    assert factories == candidate_factories(3000, 64, ChoiceRule())[: len(factories)]
    assert [t["search_params"]["oversample"] for t in measured if t["factory"] == factories[0]] == [4, 8, 16]
    assert all(t["recall"] < 0.97 for t in measured[:-1]) and measured[-1]["recall"] >= 0.97
    assert choice.factory == measured[-1]["factory"] and choice.met_target
    assert choice.recall == pytest.approx(independent_recall(docs, queries, choice.factory, choice.search_params),
                                          abs=0.02)  # fmt: skip
    sizes = [t["bytes_per_vector"] for t in measured]
    assert sizes == sorted(sizes)  # smallest first


def test_an_unreachable_target_keeps_the_largest_and_says_so(corpus):
    docs, queries = corpus
    choice = choose_index(docs, queries, ChoiceRule(target=1.01))
    assert not choice.met_target
    assert choice.factory == "SQ8"
    assert len([t for t in choice.tried if "recall" in t]) == 4 * 3  # every codec at every oversampling factor


def test_large_corpora_get_ivf_candidates_with_an_nprobe_sweep():
    rule = ChoiceRule(ivf_from=1000, nprobes=(4, 8))
    assert candidate_factories(2000, 64, rule)[0] == "IVF32,PQ8x4fsr"  # 4 sqrt(N), lowered to 39 points a list
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((2000, 64)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    choice = choose_index(docs, docs[:20] + 0.01, ChoiceRule(ivf_from=1000, nprobes=(4, 32, 64), target=0.5))
    probed = [(t["search_params"]["nprobe"], t["search_params"]["oversample"]) for t in choice.tried if "recall" in t]
    assert probed[:3] == [(4, 4), (4, 8), (4, 16)]  # nprobe 64 > nlist 32 is never tried; oversample within nprobe
    assert choice.factory.startswith("IVF") and "nprobe" in choice.search_params
    with pytest.raises(ValueError, match="at least 2 documents and 1 query"):
        choose_index(docs[:1], docs[:1])
