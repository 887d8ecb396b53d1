"""The main job (`semsearch run`) end to end on tiny seeded models: teacher and compressed pipelines side by side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compression.distill import DistillConfig
from compression.models import model_bytes
from indexes.exact import exact_search
from search.data.datasets import load_beir
from search.evaluation.metrics import knn_recall, ndcg_at_k
from search.jobs.main_job import MainJobSpec, main_job_spec, quick_subset, run_main_job, side_by_side, student_key
from search.pipeline import Pipeline


@pytest.fixture(scope="module")
def models(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("main-job-models")
    teacher = build_tiny_sentence_model(root / "teacher", seed=0, dense_dim=48)
    student = build_tiny_sentence_model(root / "student", seed=1)
    return teacher, student


def spec_for(beir: Path, models: tuple[Path, Path], runs: Path, **recipe: object) -> MainJobSpec:
    teacher, student = models
    config = DistillConfig(student=str(student), teacher=str(teacher), batch_size=8, max_seq_length=16,
                           learning_rate=1e-3, **recipe)  # fmt: skip
    return MainJobSpec(dataset=str(beir), recipe=config, distill_texts=40, eval_texts=8, compressed_index="SQ8",
                       threads=1, runs_dir=runs)  # fmt: skip


def test_main_job_builds_teacher_and_compressed_pipelines_side_by_side(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny")
    spec = spec_for(beir, models, tmp_path / "runs", loss="kl", projection="never")
    result = run_main_job(spec, show_progress=False)
    names = [row.name for row in result.rows]
    assert names == ["teacher", "compressed"]  # a 32-d student keeps its own space: no asymmetric pipeline
    teacher, compressed = (row.report for row in result.rows)
    assert teacher["recall@10_vs_teacher"] == 1.0 and teacher["index"] == "Flat"
    assert compressed["index"] == "SQ8" and compressed["model_bytes"] == model_bytes(result.int8_dir)
    assert (result.int8_dir / "onnx_config.json").exists() and not result.student_from_cache
    # the teacher's nDCG@10 equals an independent exact search with its own vectors
    from sentence_transformers import SentenceTransformer

    dataset = load_beir(beir)
    model = SentenceTransformer(str(models[0]), device="cpu")
    docs = model.encode([d.full_text() for d in dataset.corpus], normalize_embeddings=True)
    qids, texts, qrels = dataset.split_queries("test")
    _, positions = exact_search(model.encode(texts, normalize_embeddings=True), docs, 10)
    ranking = {q: [dataset.corpus[p].id for p in row] for q, row in zip(qids, positions, strict=True)}
    assert teacher["ndcg@10"] == pytest.approx(ndcg_at_k(ranking, qrels, 10), abs=1e-6)
    # the compressed pipeline's recall@10 vs teacher is the overlap of its own search with that exact teacher top-10
    pipeline = Pipeline.load(tmp_path / "runs" / dataset.name / "compressed", threads=1)
    found = [[hit.id for hit in pipeline.search(text, 10).hits] for text in texts]
    want = knn_recall(found, [ranking[q] for q in qids], 10)
    assert compressed["recall@10_vs_teacher"] == pytest.approx(want, abs=1e-9)
    table = side_by_side(result)
    assert "compressed" in table and "SUBSET" not in table
    # the second run reuses the distilled student and its ONNX files
    again = run_main_job(spec, show_progress=False)
    assert again.student_from_cache and again.int8_dir == result.int8_dir
    assert again.rows[0].report["ndcg@10"] == teacher["ndcg@10"]


def test_a_student_in_the_teachers_space_adds_the_asymmetric_pipeline(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny")
    spec = spec_for(beir, models, tmp_path / "runs", loss="mse+kl", projection="auto")
    result = run_main_job(spec, show_progress=False)
    assert [row.name for row in result.rows] == ["teacher", "compressed", "compressed-asymmetric"]
    asymmetric = result.rows[2]
    assert asymmetric.doc_encoder == result.rows[0].query_encoder  # teacher documents, student queries


def test_quick_mode_runs_on_a_labelled_subset_with_every_judged_document(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny", n_docs_per_topic=20)
    dataset = load_beir(beir)
    subset = quick_subset(dataset, "test", distractors=10, seed=0)
    judged = {doc for per_query in dataset.qrels["test"].values() for doc in per_query}
    ids = {doc.id for doc in subset.corpus}
    assert judged <= ids and len(ids) == len(judged) + 10 and subset.name.endswith("-subset")
    spec = replace(spec_for(beir, models, tmp_path / "runs", loss="kl", projection="never"), quick=True,
                   quick_distractors=10, quick_distill_texts=24, quick_compressed_index="Flat")  # fmt: skip
    result = run_main_job(spec, show_progress=False)
    assert result.subset and result.documents == len(ids)
    assert "SUBSET" in side_by_side(result)
    _, test_texts, _ = dataset.split_queries("test")
    assert [row.report["queries"] for row in result.rows] == [len(test_texts)] * 2
    assert result.rows[1].report["index"] == "Flat" and result.rows[1].report["recall@10_vs_exact"] == 1.0


def test_main_job_rejects_bad_settings(
    write_beir, tmp_path: Path, models: tuple[Path, Path], isolated_cache: Path
) -> None:
    beir = write_beir(tmp_path / "tiny")
    bad_index = replace(spec_for(beir, models, tmp_path / "runs", loss="kl", projection="never"),
                        compressed_index="IVF,Bogus")  # fmt: skip
    with pytest.raises(ValueError, match="unsupported index factory"):
        run_main_job(bad_index, show_progress=False)
    assert not (isolated_cache / "students").exists()  # refused before any distillation
    with pytest.raises(ValueError, match="dynamic, static"):
        MainJobSpec(quantization="int4")
    with pytest.raises(ValueError, match="distill_texts must be >= 1"):
        MainJobSpec(distill_texts=0)


def test_a_student_ranked_against_a_frozen_tower_searches_base_student_documents(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny")
    spec = spec_for(beir, models, tmp_path / "runs", loss="rank", projection="never", label_boost=2.0)
    result = run_main_job(spec, show_progress=False)
    compressed = result.rows[1]
    assert [row.name for row in result.rows] == ["teacher", "compressed"]
    assert compressed.doc_encoder != compressed.query_encoder  # documents by the int8 base student
    assert compressed.report["recall@10_vs_exact"] == pytest.approx(1.0, abs=0.05)  # SQ8 over the base's vectors


def test_the_default_recipe_is_the_shipped_one() -> None:
    shipped = {
        "student": "minilm",
        "teacher": "teacher",
        "loss": "rank",
        "projection": "never",
        "label_boost": 3.0,
        "learning_rate": 2e-5,
        "temperature": 0.05,
        "epochs": 1,
        "batch_size": 32,
        "max_seq_length": 128,
    }
    recipe = MainJobSpec().recipe
    assert {name: getattr(recipe, name) for name in shipped} == shipped


def test_main_job_spec_applies_overrides_to_full_and_quick_runs() -> None:
    assert main_job_spec() == MainJobSpec()
    spec = main_job_spec(compressed_index="HNSW32", distill_texts=50, quick=True, threads=1)
    assert (spec.compressed_index, spec.quick_compressed_index, spec.compressed_factory) == ("HNSW32",) * 3
    assert (spec.distill_texts, spec.quick_distill_texts, spec.texts_for_training) == (50, 50, 50)
    assert spec.quick and spec.threads == 1
    with pytest.raises(ValueError, match="distill_texts must be >= 1"):
        main_job_spec(distill_texts=0)


def test_student_key_is_pinned_and_ignores_where_the_teacher_lives() -> None:
    """A distilled student is found again after a refactor: the key is sha256 of the canonical JSON, cut to 24."""
    import hashlib
    import json

    config = DistillConfig()
    data = {"dataset": "corpus-hash", "texts": "texts-hash"}
    teacher = {"type": "sentence-transformers", "name": "teacher", "fingerprint": "f", "dim": 768}
    text = json.dumps({"config": config.to_dict(), "data": data, "teacher": teacher}, sort_keys=True, default=str)
    want = hashlib.sha256(text.encode()).hexdigest()[:24]
    assert student_key(config, data, {**teacher, "path": "/models/teacher"}) == want
    assert student_key(config, data, {**teacher, "path": "/elsewhere"}) == want
    assert student_key(replace(config, epochs=2), data, teacher) != want
