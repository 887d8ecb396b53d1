"""The side-by-side evaluation: which dataset it takes, what it refuses before any model work, and its figures checked
against `evaluate` run separately on real index directories."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from search.data.datasets import load_beir
from search.evaluation.evaluate import evaluate
from search.evaluation.side_by_side import (
    CorpusMismatch,
    DatasetUnavailable,
    EvaluationSpec,
    EvaluationUnavailable,
    VectorsNotCached,
    dataset_name,
    evaluate_side_by_side,
    load_evaluation_dataset,
)
from search.pipeline import Pipeline


@dataclass
class BuiltOn:
    """A pipeline reduced to what the dataset choice reads: its metadata."""

    meta: dict[str, Any] = field(default_factory=lambda: {"dataset": "tiny", "corpus_hash": "h", "dataset_path": None})


def loaded(index_dirs: dict[str, Path]) -> dict[str, Pipeline]:
    return {name: Pipeline.load(path) for name, path in index_dirs.items()}


def test_the_dataset_is_the_shared_one_or_the_given_one_and_a_mismatch_when_they_differ(beir_dir):
    pipelines = {"a": BuiltOn(), "b": BuiltOn()}
    assert dataset_name(pipelines, EvaluationSpec()) == "tiny"  # type: ignore[arg-type]
    for stub in pipelines.values():
        stub.meta["dataset_path"] = str(beir_dir)
    assert dataset_name(pipelines, EvaluationSpec()) == str(beir_dir)  # type: ignore[arg-type]
    pipelines["b"].meta["dataset"] = "other"
    with pytest.raises(CorpusMismatch, match="a on 'tiny', b on 'other'"):
        dataset_name(pipelines, EvaluationSpec())  # type: ignore[arg-type]
    assert dataset_name(pipelines, EvaluationSpec(dataset="override")) == "override"  # type: ignore[arg-type]


def test_the_summary_matches_evaluate_run_separately(index_dirs, beir_dir):
    steps: list[tuple[str, int, int]] = []
    body = evaluate_side_by_side(
        loaded(index_dirs), "teacher", EvaluationSpec(), lambda stage, done, total: steps.append((stage, done, total))
    )
    assert [done for _, done, _ in steps] == [0, 0, 1, 2, 3]
    assert {total for _, _, total in steps} == {3}
    assert body["dataset"] == "tiny"
    assert body["split"] == "test"
    assert body["queries"] == 5
    assert body["reference"] == "teacher"
    assert list(body["pipelines"]) == ["teacher", "compressed"]
    dataset = load_beir(beir_dir)
    teacher = Pipeline.load(index_dirs["teacher"])
    for name, path in index_dirs.items():
        expected = evaluate(Pipeline.load(path), dataset, reference=teacher, show_progress=False)
        for key in ("ndcg@10", "recall@100", "mrr@10", "recall@10_vs_exact", "recall@10_vs_teacher"):
            assert body["pipelines"][name][key] == pytest.approx(expected[key]), (name, key)
    assert body["pipelines"]["teacher"]["recall@10_vs_teacher"] == 1.0  # Flat = its own exact search


def test_a_corpus_that_is_not_cached_is_never_re_encoded(index_dirs, monkeypatch):
    pipelines = loaded(index_dirs)
    monkeypatch.setenv("SEMSEARCH_CACHE", str(index_dirs["teacher"].parent / "empty-cache"))
    with pytest.raises(VectorsNotCached) as err:
        evaluate_side_by_side(pipelines, "teacher", EvaluationSpec())
    assert "teacher, compressed" in str(err.value)
    assert "semsearch eval" in str(err.value)


def test_a_dataset_that_cannot_serve_is_refused_saying_why(index_dirs, beir_dir, write_beir, tmp_path):
    pipelines = loaded(index_dirs)
    cases = [
        (EvaluationSpec(dataset=str(tmp_path / "nowhere")), DatasetUnavailable, "cannot load dataset"),
        (
            EvaluationSpec(dataset=str(beir_dir), split="dev"),
            DatasetUnavailable,
            "no qrels for split 'dev'; available: test",
        ),
        (EvaluationSpec(dataset=str(write_beir(tmp_path / "other", seed=9))), CorpusMismatch, "corpus hash differs"),
    ]
    for spec, kind, words in cases:
        with pytest.raises(kind, match=words) as err:
            load_evaluation_dataset(pipelines, spec)
        assert isinstance(err.value, EvaluationUnavailable)
