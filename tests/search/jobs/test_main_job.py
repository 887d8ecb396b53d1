"""The main job (`semsearch run`) end to end on tiny seeded models: teacher and compressed pipelines side by side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compression.distill import DistillConfig
from compression.models import model_bytes
from compression.static import StaticConfig
from indexes.exact import exact_search
from search.data.datasets import load_beir
from search.data.training_texts import normalise_text
from search.evaluation.metrics import knn_recall, ndcg_at_k
from search.evaluation.quantize_gate import AgreementGate
from search.jobs.main_job import (
    SQ8_ROW,
    MainJobSpec,
    main_job_spec,
    quick_subset,
    run_main_job,
    side_by_side,
    split_training_texts,
)
from search.jobs.students import student_key
from search.pipeline import Pipeline


@pytest.fixture(scope="module")
def models(build_tiny_sentence_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("main-job-models")
    teacher = build_tiny_sentence_model(root / "teacher", seed=0, dense_dim=48)
    student = build_tiny_sentence_model(root / "student", seed=1)
    return teacher, student


def spec_for(beir: Path, models: tuple[Path, Path], runs: Path, **settings: object) -> MainJobSpec:
    teacher, student = models
    config = DistillConfig(teacher=str(teacher), batch_size=8, max_seq_length=16, learning_rate=1e-3, loss="mse")
    static = StaticConfig(epochs=2, batch_size=8, max_seq_length=16)
    values: dict[str, object] = dict(dataset=str(beir), recipe=config, static_recipe=static, distill_texts=40,
                                     pseudo_queries=24, pseudo_validation=8, validation_texts=8, latency_texts=4,
                                     compressed_index="SQ8", threads=1,
                                     runs_dir=runs, students=("teacher-layers:1", str(student), "static"),
                                     budget_ratio=1e-3, reference=str(student))  # fmt: skip
    values.update(settings)
    return MainJobSpec(**values)  # type: ignore[arg-type]


def test_main_job_builds_teacher_and_student_pipelines_side_by_side(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny")
    spec = spec_for(beir, models, tmp_path / "runs")
    result = run_main_job(spec, show_progress=False)
    names = [row.name for row in result.rows]
    others = [f"student:{s}" for s in spec.students if s != result.picked]
    assert names == ["teacher", "compressed", *others, f"{models[1]}-int8 (naive, symmetric)"]
    teacher, compressed = (row.report for row in result.rows[:2])
    assert teacher["recall@10_vs_teacher"] == 1.0
    assert teacher["index"] == "Flat"
    assert compressed["index"] == "SQ8"
    assert compressed["model_bytes"] == model_bytes(result.shipped_dir)
    # every candidate's int8 model was gated against its fp32 one on the held-out texts
    gates = {row["name"]: row["int8_gate"] for row in result.selection}
    assert set(gates) == set(spec.students)
    assert all(gate["texts"] == result.selection[0]["val_texts"] for gate in gates.values())
    for name, gate in gates.items():
        assert result.students[name]["shipped"] == ("int8" if gate["passed"] else "fp32")
    assert "int8 gate" in side_by_side(result)
    for row in result.rows[1:-1]:  # every student searches the teacher's documents
        assert row.doc_encoder == result.rows[0].query_encoder
    naive = result.rows[-1]
    assert naive.doc_encoder == naive.query_encoder  # the reference is symmetric
    # the pick is the validation best within the budget (here every student fits)
    best = max(result.selection, key=lambda r: (r["val_recall@10_vs_teacher"], -r["encode_ms_p50"]))
    assert result.picked == best["name"]
    assert set(result.students) == set(spec.students)
    assert result.training_texts == 40 + 24  # corpus texts + pseudo-queries
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
    assert f"compressed = {result.picked}" in table
    assert "SUBSET" not in table
    assert "validation" in table
    assert result.index_choice is None  # the factory was given
    # the second run reuses every student and its int8 files; it lets the rule choose the compressed index
    again = run_main_job(replace(spec, compressed_index="auto"), show_progress=False)
    assert all(student["from_cache"] for student in again.students.values())
    assert again.int8_dir == result.int8_dir
    assert again.rows[0].report["ndcg@10"] == teacher["ndcg@10"]
    choice = again.index_choice
    names = [row.name for row in again.rows]
    assert names[:3] == ["teacher", "compressed", SQ8_ROW]
    measured = [t for t in choice["tried"] if "recall" in t]
    assert measured[-1]["factory"] == choice["factory"] == again.rows[1].index
    assert choice["met_target"] == (choice["recall"] >= 0.99)
    assert all(t["recall"] < 0.99 for t in measured[:-1])  # no smaller candidate reached the target
    assert again.rows[2].index == "SQ8" and again.rows[2].report["search_params"] == {}  # plain codes, no rescoring
    stored = Pipeline.load(tmp_path / "runs" / dataset.name / "compressed", threads=1)
    assert stored.search_params == {**stored.meta["search_params"]} and stored.search_params == choice["search_params"]
    assert f"compressed index = {choice['factory']}" in side_by_side(again)


def test_a_student_whose_int8_fails_the_gate_ships_fp32(
    write_beir, tmp_path: Path, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.jobs.main_job as main_job

    def failing(*args: object, **kwargs: object) -> AgreementGate:
        return AgreementGate(texts=1, fp32_recall=0.9, int8_recall=0.1, cosine_to_fp32=0.2, tolerance=0.02)

    monkeypatch.setattr(main_job, "agreement_gate", failing)
    beir = write_beir(tmp_path / "tiny")
    result = run_main_job(spec_for(beir, models, tmp_path / "runs", students=("teacher-layers:1",)),
                          show_progress=False)  # fmt: skip
    student = result.students["teacher-layers:1"]
    assert student["shipped"] == "fp32"
    assert result.shipped_dir == Path(student["fp32_dir"]) != result.int8_dir
    compressed = result.rows[1]
    assert compressed.query_encoder == "teacher-layers:1-fp32"
    assert compressed.report["model_bytes"] == model_bytes(result.shipped_dir)
    assert "FAILED: ships fp32" in side_by_side(result)


def test_the_budget_excludes_students_slower_than_the_teachers_share(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny")
    spec = spec_for(beir, models, tmp_path / "runs", students=("static",), budget_ratio=1e9)
    with pytest.raises(ValueError, match="static"):  # nothing encodes in a billionth of the teacher's time
        run_main_job(spec, show_progress=False)


def test_quick_mode_runs_on_a_labelled_subset_with_every_judged_document(
    write_beir, tmp_path: Path, models: tuple[Path, Path]
) -> None:
    beir = write_beir(tmp_path / "tiny", n_docs_per_topic=20)
    (beir / "qrels" / "train.tsv").unlink()  # a BEIR folder without train qrels trains on corpus text alone
    dataset = load_beir(beir)
    subset = quick_subset(dataset, "test", distractors=10, seed=0)
    judged = {doc for per_query in dataset.qrels["test"].values() for doc in per_query}
    ids = {doc.id for doc in subset.corpus}
    assert judged <= ids
    assert len(ids) == len(judged) + 10
    assert subset.name.endswith("-subset")
    spec = spec_for(beir, models, tmp_path / "runs", students=("static",), quick=True, quick_distractors=10,
                    quick_distill_texts=10, quick_pseudo_queries=6, quick_compressed_index="Flat",
                    reference=None)  # fmt: skip
    result = run_main_job(spec, show_progress=False)
    assert result.subset
    assert result.documents == len(ids)
    assert result.training_texts == 10 + 6
    assert "SUBSET" in side_by_side(result)
    _, test_texts, _ = dataset.split_queries("test")
    assert [row.report["queries"] for row in result.rows] == [len(test_texts)] * 2
    assert result.rows[1].report["index"] == "Flat"
    assert result.rows[1].report["recall@10_vs_exact"] == 1.0


def test_main_job_rejects_bad_settings(
    write_beir, tmp_path: Path, models: tuple[Path, Path], isolated_cache: Path
) -> None:
    beir = write_beir(tmp_path / "tiny")
    bad_index = spec_for(beir, models, tmp_path / "runs", compressed_index="IVF,Bogus")
    with pytest.raises(ValueError, match="unsupported index factory"):
        run_main_job(bad_index, show_progress=False)
    assert not (isolated_cache / "students").exists()  # refused before any distillation
    with pytest.raises(ValueError, match="dynamic, static"):
        MainJobSpec(quantization="int4")
    with pytest.raises(ValueError, match="distill_texts must be >= 1"):
        MainJobSpec(distill_texts=0)
    with pytest.raises(ValueError, match="static"):
        MainJobSpec(students=("bert-huge",))
    with pytest.raises(ValueError, match="budget_ratio"):
        MainJobSpec(budget_ratio=0)
    with pytest.raises(ValueError, match="at least one student"):
        MainJobSpec(students=())


def test_the_default_recipe_is_the_shipped_one() -> None:
    spec = MainJobSpec()
    assert spec.students == ("teacher-layers:0,11", "minilm", "static")
    assert spec.budget_ratio == 15.0
    assert spec.pseudo_queries > spec.distill_texts
    assert spec.pseudo_validation + spec.validation_texts >= 1000
    assert spec.recipe == DistillConfig()
    assert spec.static_recipe == StaticConfig()
    assert spec.large_epochs > spec.recipe.epochs
    assert spec.texts_for_training == spec.distill_texts
    assert replace(spec, large=True).texts_for_training is None


def test_main_job_spec_applies_overrides_to_full_and_quick_runs() -> None:
    assert main_job_spec() == MainJobSpec()
    spec = main_job_spec(compressed_index="HNSW32", distill_texts=50, quick=True, threads=1)
    assert (spec.compressed_index, spec.quick_compressed_index, spec.compressed_factory) == ("HNSW32",) * 3
    assert (spec.distill_texts, spec.quick_distill_texts, spec.texts_for_training) == (50, 50, 50)
    assert spec.quick
    assert spec.threads == 1
    spec = main_job_spec(pseudo_queries=7)
    assert (spec.pseudo_queries, spec.quick_pseudo_queries, spec.large_pseudo_queries) == (7, 7, 7)
    assert replace(spec, quick=True).pseudo_queries_for_training == 7
    assert replace(MainJobSpec(), large=True).pseudo_queries_for_training == MainJobSpec().large_pseudo_queries
    with pytest.raises(ValueError, match="distill_texts must be >= 1"):
        main_job_spec(distill_texts=0)
    with pytest.raises(ValueError, match="pseudo_queries must be >= 0"):
        main_job_spec(pseudo_queries=-1)


def test_training_texts_add_pseudo_queries_that_repeat_no_corpus_text_and_no_test_query(
    write_beir, tmp_path: Path
) -> None:
    dataset = load_beir(write_beir(tmp_path / "tiny", n_docs_per_topic=20))
    spec = MainJobSpec(dataset="unused", distill_texts=30, validation_texts=10, pseudo_queries=40, pseudo_validation=20)
    data = split_training_texts(dataset, spec)
    assert len(data.train) == 30 + 40
    assert len(data.held_out) == 10 + 20
    assert not set(data.train) & set(data.held_out)
    assert len(set(data.train)) == len(data.train)
    _, test_queries, _ = dataset.split_queries("test")
    assert not {normalise_text(q) for q in test_queries} & {normalise_text(t) for t in data.train + data.held_out}
    assert split_training_texts(dataset, spec) == data  # seeded
    corpus_only = split_training_texts(dataset, replace(spec, pseudo_queries=0))
    assert set(corpus_only.train) < set(data.train)  # the corpus texts are the same, pseudo-queries come on top


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
    assert student_key(replace(config, epochs=3), data, teacher) != want
