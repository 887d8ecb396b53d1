"""The side-by-side comparison, pure: each pipeline's top-k against the reference's, on hand-made hit lists; and its
JSON form."""

from __future__ import annotations

import json

import pytest

from search.compare import CompareResult, choose_reference, compare_results, speedup
from search.pipeline import Hit, SearchResult, Timings


def answer(ids: list[str], total_ms: float = 6.0) -> SearchResult:
    hits = [Hit(doc, 1.0 - i / 10, f"title {doc}", "") for i, doc in enumerate(ids)]
    return SearchResult(hits, Timings(encode_ms=2.0, search_ms=3.0, total_ms=total_ms, tokenize_ms=1.0))


def test_choose_reference():
    assert choose_reference(["a", "teacher"], None) == "teacher"
    assert choose_reference(["a", "b"], None) == "a"
    assert choose_reference(["a", "b"], "b") == "b"
    with pytest.raises(ValueError, match="reference pipeline 'x' is not loaded; loaded: a, b"):
        choose_reference(["a", "b"], "x")
    with pytest.raises(ValueError, match="no pipelines"):
        choose_reference([], None)


def test_each_top_k_is_measured_against_the_reference():
    results = {"teacher": answer(["a", "b", "c"], 12.0), "small": answer(["b", "x", "a"], 3.0), "far": answer(["y"])}
    result = compare_results("q", 3, "teacher", results)
    assert (result.query, result.k, result.reference) == ("q", 3, "teacher")
    assert list(result.pipelines) == ["teacher", "small", "far"]
    teacher, small, far = (result.pipelines[name] for name in ("teacher", "small", "far"))
    assert (teacher.recall_vs_reference, teacher.missing, teacher.extra) == (1.0, [], [])
    assert teacher.reference_ranks == [1, 2, 3]
    assert teacher.speedup_vs_reference == 1.0
    assert (small.recall_vs_reference, small.missing, small.extra) == (pytest.approx(2 / 3), ["c"], ["x"])
    assert small.reference_ranks == [2, None, 1]
    assert small.speedup_vs_reference == pytest.approx(4.0)
    assert (far.recall_vs_reference, far.missing, far.extra) == (0.0, ["a", "b", "c"], ["y"])
    assert small.hits == results["small"].hits
    assert small.timings == results["small"].timings


def test_recall_divides_by_the_references_hits_and_an_empty_reference_scores_1():
    short = compare_results("q", 3, "teacher", {"teacher": answer(["a", "b"]), "small": answer(["b", "c", "d"])})
    assert short.pipelines["small"].recall_vs_reference == pytest.approx(1 / 2)  # 1 of the reference's 2, not of k
    empty = compare_results("q", 3, "teacher", {"teacher": answer([]), "small": answer(["b", "c"])})
    assert empty.pipelines["small"].recall_vs_reference == 1.0
    assert empty.pipelines["teacher"].recall_vs_reference == 1.0
    assert empty.pipelines["small"].missing == []
    assert empty.pipelines["small"].extra == ["b", "c"]


def test_a_missing_reference_answer_is_refused():
    with pytest.raises(ValueError, match="no answer from the reference pipeline 'teacher'; answers from: small"):
        compare_results("q", 3, "teacher", {"small": answer(["a"])})


def test_speedup_never_divides_by_zero():
    assert speedup(10.0, 2.5) == 4.0
    assert speedup(10.0, 0.0) == pytest.approx(10.0 / 1e-3)


def test_the_json_form_holds_every_figure_under_its_api_name():
    result = compare_results("q", 2, "teacher", {"teacher": answer(["a", "b"], 8.0), "small": answer(["b", "z"], 2.0)})
    body = json.loads(json.dumps(result.to_dict()))  # JSON-encodable as is
    assert body["query"] == "q"
    assert body["k"] == 2
    assert body["reference"] == "teacher"
    small = body["pipelines"]["small"]
    assert small["hits"] == [
        {"id": "b", "score": 1.0, "title": "title b", "snippet": "", "reference_rank": 2},
        {"id": "z", "score": 0.9, "title": "title z", "snippet": "", "reference_rank": None},
    ]
    assert small["recall@k_vs_teacher"] == 0.5
    assert small["missing"] == ["a"]
    assert small["extra"] == ["z"]
    assert small["speedup_vs_reference"] == 4.0
    assert small["timings"] == {
        "encode_ms": 2.0,
        "search_ms": 3.0,
        "total_ms": 2.0,
        "tokenize_ms": 1.0,
        "rescore_ms": 0.0,
    }
    assert isinstance(result, CompareResult)
    assert result.to_dict()["pipelines"]["teacher"]["missing"] == []
