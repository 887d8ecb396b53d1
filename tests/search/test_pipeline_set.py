"""`PipelineSet`: named pipelines on stub pipelines (fixed hit lists, no model, no index), and loading real index
directories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from search.data.datasets import load_beir
from search.pipeline import BatchResult, Hit, SearchResult, Timings
from search.pipeline_set import PipelineSet, UnknownPipelineError, encoder_precision
from search.sources import PipelineSource

TIMINGS = Timings(encode_ms=2.0, search_ms=3.0, total_ms=6.0, tokenize_ms=1.0)


@dataclass
class StubPipeline:
    """Answers every query with the same ids, best first."""

    ids: list[str]
    meta: dict[str, Any] = field(default_factory=lambda: {"dataset": "tiny", "corpus_hash": "h", "dataset_path": None})

    def hits(self, k: int) -> list[Hit]:
        return [Hit(doc, 1.0 - i / 10, f"title {doc}", "") for i, doc in enumerate(self.ids[:k])]

    def search(self, query: str, k: int, where: Any = None) -> SearchResult:
        assert where is None  # these stubs hold no metadata
        return SearchResult(self.hits(k), TIMINGS)

    def search_batch(self, queries: list[str], k: int) -> BatchResult:
        return BatchResult([self.hits(k) for _ in queries], TIMINGS)


def stub_set(answers: dict[str, list[str]], **options: Any) -> PipelineSet:
    return PipelineSet({name: StubPipeline(ids) for name, ids in answers.items()}, **options)  # type: ignore[misc]


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
    assert pipelines.names == ["small", "teacher"]
    assert pipelines.default == "small"
    assert pipelines.reference == "teacher"  # teacher when loaded, whatever its position
    assert pipelines.resolve(None) == "small"
    assert pipelines.resolve("teacher") == "teacher"
    with pytest.raises(UnknownPipelineError, match="unknown pipeline 'x'; loaded: small, teacher"):
        pipelines.search("q", 3, "x")


def test_compare_searches_the_chosen_and_the_reference_and_measures_against_it():
    pipelines = stub_set({"small": ["b", "x", "a"], "teacher": ["a", "b", "c"], "far": ["y"]})
    result = pipelines.compare("q", 3, ["far"])
    assert result.reference == "teacher"
    assert list(result.pipelines) == ["teacher", "far"]  # loading order
    assert result.pipelines["far"].missing == ["a", "b", "c"]
    everything = pipelines.compare("q", 3)
    assert list(everything.pipelines) == ["small", "teacher", "far"]
    assert everything.pipelines["small"].recall_vs_reference == pytest.approx(2 / 3)
    with pytest.raises(UnknownPipelineError, match="unknown pipeline 'nope'; loaded: small, teacher, far"):
        pipelines.compare("q", 3, ["nope"])


def test_search_and_batch_report_to_their_observers():
    seen, batches = [], []
    pipelines = stub_set(
        {"a": ["d1", "d2"], "b": ["d3"]},
        observer=lambda name, timings: seen.append((name, timings)),
        batch_observer=lambda name, timings, size: batches.append((name, timings, size)),
    )
    name, result = pipelines.search("q", 1, "b")
    assert name == "b"
    assert [hit.id for hit in result.hits] == ["d3"]
    name, batch = pipelines.search_batch(["q1", "q2", "q3"], 2)
    assert name == "a"
    assert [[hit.id for hit in hits] for hits in batch.hits] == [["d1", "d2"]] * 3
    assert seen == [("b", TIMINGS)]
    assert batches == [("a", TIMINGS, 3)]


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
    assert isinstance(loaded, OnnxEncoder)
    assert loaded.session_setting(ALLOW_SPINNING) == "0"
    described = pipelines.describe()["compressed"]
    assert described["spinning"] is False
    assert described["single_query_threads"] == 1
    assert described["threads"] == 1
