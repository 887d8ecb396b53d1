"""`semsearch bench-students` on fake encoders and a tiny BEIR folder, every figure checked against brute-force
numpy; the pure selections (Pareto, beats-MiniLM, correlation) on hand-made rows."""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import search.cli.students  # noqa: F401  (registers `bench-students` until search.cli imports it)
from compression.encoders import FakeEncoder, l2_normalise
from search.bench.students import (
    Candidate,
    annotate_rows,
    average_ranks,
    correlation,
    naive_reference,
    parse_candidate,
    run_student_bench,
)
from search.cli.base import app
from search.data.datasets import load_dataset
from search.data.training_texts import training_texts


@dataclass
class NoisyEncoder:
    """The teacher's fake space plus seeded per-text noise: a teacher-space student of tunable quality."""

    base: FakeEncoder
    noise: float
    name: str = "noisy"
    size: int = 1000
    calls: list[int] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return self.base.dim

    def encode(self, texts: Any, kind: str = "query", batch_size: int = 32) -> np.ndarray:
        self.calls.append(len(texts))
        seeds = [zlib.crc32(f"{self.noise}:{text}".encode()) for text in texts]
        noise = np.array([np.random.default_rng(s).standard_normal(self.dim) for s in seeds], dtype=np.float32)
        return l2_normalise(self.base.encode(texts, kind) + self.noise * noise)

    def identity(self) -> dict[str, Any]:
        return {"type": "noisy", "name": self.name, "fingerprint": f"noisy-{self.noise}", "dim": self.dim,
                "precision": "int8"}  # fmt: skip

    def model_bytes(self) -> int:
        return self.size


def top_k_sets(queries: np.ndarray, docs: np.ndarray, k: int) -> list[set[int]]:
    """Brute-force top-k positions; asserts a clear score gap at rank k so the sets are unambiguous."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    ordered = np.sort(scores, axis=1)[:, ::-1]
    assert (ordered[:, k - 1] - ordered[:, k] > 1e-5).all(), "tied scores at rank k: pick other test data"
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores]


def ndcg10(ranked: list[str], grades: dict[str, int]) -> float:
    dcg = sum(grades.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def brute_force_row(query_encoder, doc_encoder, teacher, dataset, split="test") -> dict[str, float]:
    qids, texts, qrels = dataset.split_queries(split)
    doc_texts = [doc.full_text() for doc in dataset.corpus]
    queries = np.concatenate([query_encoder.encode([t]) for t in texts])
    docs = doc_encoder.encode(doc_texts, kind="passage")
    teacher_docs = teacher.encode(doc_texts, kind="passage")
    wanted = top_k_sets(teacher.encode(texts), teacher_docs, 10)
    found = top_k_sets(queries, docs, 10)
    scores = queries @ docs.T
    ranked = [[dataset.corpus[i].id for i in np.argsort(-row, kind="stable")] for row in scores]
    return {
        "recall@10_vs_teacher": float(np.mean([len(a & b) / 10 for a, b in zip(found, wanted, strict=True)])),
        "ndcg@10": float(np.mean([ndcg10(r, qrels[q]) for r, q in zip(ranked, qids, strict=True)])),
    }


def test_bench_rows_match_brute_force_and_files_are_written(tmp_path, beir_dir):
    dataset = load_dataset(str(beir_dir))
    teacher = FakeEncoder(dim=16, name="T")
    students = {f"n{noise}": NoisyEncoder(FakeEncoder(dim=16), noise, name=f"n{noise}") for noise in (0.3, 0.8, 2.0)}
    naive = FakeEncoder(dim=12, name="naive")
    other = FakeEncoder(dim=8, name="other")
    encoders = {"T": teacher, "naive": naive, "other": other, **students}
    candidates = [Candidate(name, "noisy", "auto", name) for name in students]
    candidates += [Candidate("other", "static", "fp32", "other", docs="own"), naive_reference("naive")]
    heldout = training_texts(dataset, max_texts=30, seed=0)
    results = run_student_bench(dataset, "test", candidates, "T", tmp_path / "out", heldout, threads=1,
                                loader=lambda spec, threads: encoders[spec], show_progress=False)  # fmt: skip
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == ["teacher", *students, "other", "minilm-int8"]
    assert rows["teacher"]["recall@10_vs_teacher"] == 1.0
    assert rows["teacher"]["heldout_cosine"] == pytest.approx(1.0)
    assert rows["teacher"]["heldout_recall@10_vs_teacher"] == 1.0
    layouts = {"teacher": (teacher, teacher), "other": (other, other), "minilm-int8": (naive, naive)}
    layouts |= {name: (encoder, teacher) for name, encoder in students.items()}
    for name, (query_encoder, doc_encoder) in layouts.items():
        expected = brute_force_row(query_encoder, doc_encoder, teacher, dataset)
        assert rows[name]["recall@10_vs_teacher"] == pytest.approx(expected["recall@10_vs_teacher"], abs=1e-12), name
        assert rows[name]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-9), name
        assert 0 < rows[name]["encode_ms_p50"] <= rows[name]["encode_ms_p95"]
    assert rows["n2.0"]["recall@10_vs_teacher"] < 1.0  # the noise is large enough to change the top-10
    for name, encoder in students.items():  # held-out cosine: mean cosine of the same texts' vectors
        cosine = np.mean(np.sum(encoder.encode(heldout) * teacher.encode(heldout), axis=1))
        assert rows[name]["heldout_cosine"] == pytest.approx(float(cosine), abs=1e-5)
        assert (rows[name]["precision"], rows[name]["model_bytes"], rows[name]["docs"]) == ("int8", 1000, "teacher")
    assert rows["other"]["heldout_cosine"] is None
    assert rows["minilm-int8"]["heldout_cosine"] is None
    assert rows["other"]["precision"] == "fp32"
    assert rows["minilm-int8"]["docs"] == "own"
    floor = rows["minilm-int8"]["recall@10_vs_teacher"]
    assert all(row["beats_minilm_int8"] == (row["recall@10_vs_teacher"] >= floor) for row in rows.values())
    points = [(row["recall@10_vs_teacher"], row["encode_ms_p50"]) for row in rows.values()]
    for row, (q, c) in zip(rows.values(), points, strict=True):  # O(n^2) dominance as the reference
        dominated = any(q2 >= q and c2 <= c and (q2 > q or c2 < c) for q2, c2 in points)
        assert row["pareto"] == (not dominated)
    corr = results["correlation"]  # over the three noisy students (teacher and references left out)
    assert corr["rows"] == list(students)
    assert corr["n"] == 3
    xs = [rows[n]["heldout_cosine"] for n in students]
    ys = [rows[n]["recall@10_vs_teacher"] for n in students]
    assert corr["spearman"] == pytest.approx(reference_spearman(xs, ys))
    assert corr["pearson"] == pytest.approx(reference_pearson(xs, ys))
    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text())["rows"][1]["name"] == "n0.3"
    table = (out / "table.md").read_text()
    assert [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ")][1:] == [
        f"| {name}" for name in rows
    ]
    assert "Pearson r = " in table
    assert "Budget pick on held-out" in table
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["budget_pick"]["metric"] == "heldout_recall@10_vs_teacher"


def test_asymmetric_candidate_of_another_dimension_fails_before_encoding(tmp_path, beir_dir):
    with pytest.raises(ValueError, match=r"8-d queries cannot search the teacher's 16-d documents.*:sym"):
        run_student_bench(str(beir_dir), "test", [Candidate("x", "static", "fp32", "fake:8")], "fake:16",
                          tmp_path / "out", [], threads=1, show_progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unique"):
        run_student_bench(str(beir_dir), "test", [Candidate("teacher", "s", "fp32", "fake:16")], "fake:16",
                          tmp_path / "out", [], threads=1, show_progress=False)  # fmt: skip


def row(name: str, recall: float, ms: float, family: str = "s", **extra: Any) -> dict[str, Any]:
    return {"name": name, "family": family, "recall@10_vs_teacher": recall, "encode_ms_p50": ms, **extra}


def test_annotate_rows_pareto_speedup_and_minilm_floor():
    rows = [row("teacher", 1.0, 30.0), row("a", 0.9, 2.0), row("b", 0.9, 3.0), row("c", 0.7, 1.0),
            row("d", 0.7, 1.0), row("e", 0.6, 1.5), row("minilm-int8", 0.8, 5.0)]  # fmt: skip
    annotate_rows(rows, "teacher", "minilm-int8")
    assert [r["name"] for r in rows if r["pareto"]] == ["teacher", "a", "c", "d"]  # equal points are both kept
    assert [r["beats_minilm_int8"] for r in rows] == [True, True, True, False, False, False, True]
    assert rows[1]["speedup_vs_teacher"] == pytest.approx(15.0)
    annotate_rows(rows[:3], "teacher", None)
    assert rows[1]["beats_minilm_int8"] is None
    with pytest.raises(ValueError, match="no row named 'minilm-int8'"):
        annotate_rows(rows[:3], "teacher", "minilm-int8")


def reference_ranks(values: list[float]) -> list[float]:
    return [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]


def reference_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def reference_spearman(x: list[float], y: list[float]) -> float:
    return reference_pearson(reference_ranks(x), reference_ranks(y))


def test_correlation_against_a_plain_python_reference():
    x = [0.91, 0.85, 0.85, 0.97, 0.70, 0.88]
    y = [0.62, 0.55, 0.58, 0.80, 0.41, 0.58]
    assert average_ranks(x).tolist() == reference_ranks(x) == [5.0, 2.5, 2.5, 6.0, 1.0, 4.0]
    result = correlation(x, y)
    assert result["n"] == 6
    assert result["pearson"] == pytest.approx(reference_pearson(x, y), abs=1e-12)
    assert result["spearman"] == pytest.approx(reference_spearman(x, y), abs=1e-12)
    assert correlation([1, 2, 3], [3, 2, 1])["spearman"] == pytest.approx(-1.0)
    assert correlation([1, 2], [1, 2]) == {"n": 2, "pearson": None, "spearman": None}  # too few to mean anything
    assert correlation([1, 1, 1], [1, 2, 3])["pearson"] is None  # a constant has no correlation
    with pytest.raises(ValueError, match="x has 2 values but y has 3"):
        correlation([1, 2], [1, 2, 3])


def test_parse_candidate_and_validation(tmp_path):
    assert parse_candidate("a=fake:16") == Candidate("a", "student", "auto", "fake:16", "teacher")
    assert parse_candidate("b=fake:8:sym", "reference") == Candidate("b", "reference", "auto", "fake:8", "own")
    assert parse_candidate(f"c={tmp_path}:asym").query == str(tmp_path)
    (tmp_path / "static_config.json").write_text("{}")
    assert parse_candidate(f"d={tmp_path}").family == "static"
    for bad in ("noequals", "=fake:8", "x="):
        with pytest.raises(ValueError, match="NAME=PATH"):
            parse_candidate(bad)
    with pytest.raises(ValueError, match="teacher, own"):
        Candidate("a", "s", "fp32", "fake:8", docs="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="auto, fp32, int8"):
        Candidate("a", "s", "int4", "fake:8")


def test_cli_on_fake_encoders(tmp_path, beir_dir):
    runner = CliRunner()
    common = ["bench-students", "--dataset", str(beir_dir), "--teacher", "fake:16", "--naive-int8", "fake:12",
              "--threads", "1", "--heldout-texts", "20"]  # fmt: skip
    result = runner.invoke(app, [*common, "--candidate", "same=fake:16", "--candidate", "small=fake:8:sym", "--family",
                                 "small=static", "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["teacher", "same", "small", "minilm-int8"]
    assert rows["same"]["recall@10_vs_teacher"] == 1.0
    assert rows["same"]["heldout_cosine"] == pytest.approx(1.0)
    assert rows["small"]["family"] == "static"
    assert rows["small"]["docs"] == "own"
    assert results["heldout_texts"] == 20
    assert results["budget_pick"]["metric"] == "heldout_recall@10_vs_teacher"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "table.md", "frontier.png"}
    table = runner.invoke(app, [*common, "--candidate", "same=fake:16", "--out", str(tmp_path / "o2")])
    assert table.exit_code == 0
    assert "budget pick" in table.output
    for args, message in ((["--candidate", "bad"], "NAME=PATH"), (["--candidate", "x=fake:8"], ":sym"),
                          (["--candidate", "a=fake:16", "--family", "zz=static"], "unknown candidates")):  # fmt: skip
        failed = runner.invoke(app, [*common, *args, "--out", str(tmp_path / "bad")])
        assert failed.exit_code == 2
        assert message in failed.output
        assert len(failed.output.strip().splitlines()) == 1
