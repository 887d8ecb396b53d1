"""`PipelineSet`, the server's logic, on stub pipelines (fixed hit lists, no model, no index) and, for the metrics
summary, on real index directories checked against `evaluate` run separately."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from search.data.datasets import load_beir
from search.evaluation.evaluate import evaluate
from search.pipeline import BatchResult, Hit, Pipeline, SearchResult, Timings
from search.serve.pipelines import (
    MetricsUnavailable,
    PipelineSet,
    PipelineSource,
    UnknownPipelineError,
    choose_reference,
    encoder_precision,
    parse_pipeline_specs,
)

TIMINGS = Timings(encode_ms=2.0, search_ms=3.0, total_ms=6.0, tokenize_ms=1.0)


@dataclass
class StubPipeline:
    """Answers every query with the same ids, best first."""

    ids: list[str]
    meta: dict[str, Any] = field(default_factory=lambda: {"dataset": "tiny", "corpus_hash": "h", "dataset_path": None})

    def hits(self, k: int) -> list[Hit]:
        return [Hit(doc, 1.0 - i / 10, f"title {doc}", "") for i, doc in enumerate(self.ids[:k])]

    def search(self, query: str, k: int) -> SearchResult:
        return SearchResult(self.hits(k), TIMINGS)

    def search_batch(self, queries: list[str], k: int) -> BatchResult:
        return BatchResult([self.hits(k) for _ in queries], TIMINGS)


def stub_set(answers: dict[str, list[str]], **options: Any) -> PipelineSet:
    return PipelineSet({name: StubPipeline(ids) for name, ids in answers.items()}, **options)  # type: ignore[misc]


def test_parse_pipeline_specs_reports_every_problem_together():
    assert parse_pipeline_specs(["t-1_x=some/dir", "b= ~/x "]) == [
        PipelineSource("t-1_x", Path("some/dir")),
        PipelineSource("b", Path("~/x").expanduser()),
    ]
    with pytest.raises(ValueError) as err:
        parse_pipeline_specs(["good=dir", "bad name=dir", "nodir", "empty=", "good=other"])
    message = str(err.value)
    for part in ("'bad name' must match", "'nodir' is not NAME=DIR", "'empty=' is not NAME=DIR", "'good' is used 2"):
        assert part in message


def test_choose_reference():
    assert choose_reference(["a", "teacher"], None) == "teacher"
    assert choose_reference(["a", "b"], None) == "a"
    assert choose_reference(["a", "b"], "b") == "b"
    with pytest.raises(ValueError, match="reference pipeline 'x' is not loaded; loaded: a, b"):
        choose_reference(["a", "b"], "x")
    with pytest.raises(ValueError, match="no pipelines loaded"):
        choose_reference([], None)


def test_precision_comes_from_the_onnx_identity_or_config(tmp_path):
    assert encoder_precision({"type": "sentence-transformers"}) == {"precision": "fp32", "quantization": None}
    (tmp_path / "onnx_config.json").write_text(json.dumps({"precision": "int8", "quantization": "dynamic"}))
    assert encoder_precision({"type": "onnx", "path": str(tmp_path)}) == {
        "precision": "int8",
        "quantization": "dynamic",
    }
    gone = {"type": "onnx", "path": str(tmp_path / "gone"), "precision": "int8"}
    assert encoder_precision(gone) == {"precision": "int8", "quantization": None}
    assert encoder_precision({"type": "onnx", "path": str(tmp_path / "gone")})["precision"] == "fp32"


def test_resolve_defaults_to_the_first_and_lists_the_loaded_on_error():
    pipelines = stub_set({"small": ["a"], "teacher": ["a"]})
    assert pipelines.names == ["small", "teacher"] and pipelines.default == "small"
    assert pipelines.reference == "teacher"  # teacher when loaded, whatever its position
    assert pipelines.resolve(None) == "small" and pipelines.resolve("teacher") == "teacher"
    with pytest.raises(UnknownPipelineError, match="unknown pipeline 'x'; loaded: small, teacher"):
        pipelines.search("q", 3, "x")


def test_search_and_batch_report_to_their_observers():
    seen, batches = [], []
    pipelines = stub_set(
        {"a": ["d1", "d2"], "b": ["d3"]},
        observer=lambda name, timings: seen.append((name, timings)),
        batch_observer=lambda name, timings, size: batches.append((name, timings, size)),
    )
    name, result = pipelines.search("q", 1, "b")
    assert name == "b" and [hit.id for hit in result.hits] == ["d3"]
    name, batch = pipelines.search_batch(["q1", "q2", "q3"], 2)
    assert name == "a" and [[hit.id for hit in hits] for hits in batch.hits] == [["d1", "d2"]] * 3
    assert seen == [("b", TIMINGS)] and batches == [("a", TIMINGS, 3)]


def test_compare_measures_each_top_k_against_the_reference():
    pipelines = stub_set({"teacher": ["a", "b", "c", "d"], "small": ["b", "x", "a", "c"], "far": ["y", "z", "w"]})
    result = pipelines.compare("q", 3)
    assert result.reference == "teacher" and result.k == 3 and list(result.pipelines) == ["teacher", "small", "far"]
    teacher, small, far = (result.pipelines[name] for name in ("teacher", "small", "far"))
    assert (teacher.recall_vs_reference, teacher.missing, teacher.extra) == (1.0, [], [])
    assert (small.recall_vs_reference, small.missing, small.extra) == (pytest.approx(2 / 3), ["c"], ["x"])
    assert (far.recall_vs_reference, far.missing, far.extra) == (0.0, ["a", "b", "c"], ["y", "z", "w"])
    assert [hit.id for hit in small.hits] == ["b", "x", "a"] and small.timings == TIMINGS


def test_compare_divides_by_the_references_hits_and_scores_an_empty_reference_1():
    short = stub_set({"teacher": ["a", "b"], "small": ["b", "c", "d"]}).compare("q", 3)
    assert short.pipelines["small"].recall_vs_reference == pytest.approx(1 / 2)  # 1 of the reference's 2, not of k
    empty = stub_set({"teacher": [], "small": ["b", "c"]}).compare("q", 3)
    assert empty.pipelines["small"].recall_vs_reference == 1.0 and empty.pipelines["teacher"].recall_vs_reference == 1.0
    assert empty.pipelines["small"].missing == [] and empty.pipelines["small"].extra == ["b", "c"]


def test_metrics_dataset_is_the_shared_one_or_the_override_and_409_when_they_differ(beir_dir):
    pipelines = stub_set({"a": ["d"], "b": ["d"]})
    assert pipelines.metrics_dataset_name() == "tiny"
    for stub in pipelines.pipelines.values():
        stub.meta["dataset_path"] = str(beir_dir)  # type: ignore[attr-defined]
    assert pipelines.metrics_dataset_name() == str(beir_dir)  # the recorded folder, when it still exists
    pipelines.pipelines["b"].meta["dataset"] = "other"  # type: ignore[attr-defined]
    with pytest.raises(MetricsUnavailable) as err:
        pipelines.metrics_dataset_name()
    assert err.value.status == 409 and "a on 'tiny', b on 'other'" in err.value.message
    assert stub_set({"a": ["d"]}, metrics_dataset="override").metrics_dataset_name() == "override"


def test_metrics_summary_matches_evaluate_run_separately(index_dirs, beir_dir):
    pipelines = PipelineSet.load([PipelineSource(name, path) for name, path in index_dirs.items()])
    steps: list[tuple[str, int, int]] = []
    body = pipelines.compute_metrics(lambda stage, done, total: steps.append((stage, done, total)))
    assert [done for _, done, _ in steps] == [0, 0, 1, 2, 3] and {total for _, _, total in steps} == {3}
    assert body["dataset"] == "tiny" and body["split"] == "test" and body["queries"] == 5
    assert body["reference"] == "teacher" and list(body["pipelines"]) == ["teacher", "compressed"]
    dataset = load_beir(beir_dir)
    teacher = Pipeline.load(index_dirs["teacher"])
    for name, path in index_dirs.items():
        expected = evaluate(Pipeline.load(path), dataset, reference=teacher, show_progress=False)
        for key in ("ndcg@10", "recall@100", "mrr@10", "recall@10_vs_exact", "recall@10_vs_teacher"):
            assert body["pipelines"][name][key] == pytest.approx(expected[key]), (name, key)
    assert body["pipelines"]["teacher"]["recall@10_vs_teacher"] == 1.0  # Flat = its own exact search


def test_metrics_refuse_to_re_encode_a_corpus_that_is_not_cached(index_dirs, monkeypatch):
    pipelines = PipelineSet.load([PipelineSource(name, path) for name, path in index_dirs.items()])
    monkeypatch.setenv("SEMSEARCH_CACHE", str(index_dirs["teacher"].parent / "empty-cache"))
    with pytest.raises(MetricsUnavailable) as err:
        pipelines.compute_metrics()
    assert err.value.status == 409 and "teacher, compressed" in err.value.message
    assert "semsearch eval" in err.value.message


def test_load_refuses_duplicate_names(tmp_path):
    with pytest.raises(ValueError, match="pipeline name 'a' is used 2 times"):
        PipelineSet.load([PipelineSource("a", tmp_path), PipelineSource("a", tmp_path)])


def test_loaded_onnx_pipelines_run_with_spinning_off_and_say_so(build_tiny_sentence_model, tmp_path, beir_dir):
    """The server's load path (index metadata -> OnnxEncoder) gets the quiet session settings, and /pipelines
    shows the thread settings in force."""
    from compression.encoders.onnx import ALLOW_SPINNING, OnnxEncoder
    from compression.onnx_export import export_onnx
    from indexes.faiss_index import IndexSpec
    from search.pipeline import build_index_dir

    model = build_tiny_sentence_model(tmp_path / "model", seed=0, max_seq_length=32)
    encoder = OnnxEncoder(export_onnx(model, tmp_path / "onnx"), threads=1)
    build_index_dir(load_beir(beir_dir), encoder, IndexSpec("SQ8"), tmp_path / "ix", show_progress=False)
    pipelines = PipelineSet.load([PipelineSource("compressed", tmp_path / "ix")], threads=1)
    loaded = pipelines.get("compressed").encoder
    assert isinstance(loaded, OnnxEncoder) and loaded.session_setting(ALLOW_SPINNING) == "0"
    described = pipelines.describe()["compressed"]
    assert described["spinning"] is False and described["single_query_threads"] == 1 and described["threads"] == 1
