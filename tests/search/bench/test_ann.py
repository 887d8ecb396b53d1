import csv
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import search.bench.ann as bench
from compression.encoders import FakeEncoder
from indexes.exact import exact_search
from search.bench.ann import (
    ROW_KEYS,
    BenchSpec,
    EncoderEntry,
    best_under_budget,
    doc_encoder_name,
    fp32_counterparts,
    make_bench_spec,
    parse_encoders,
    parse_sweep,
    run_bench,
    sweep_grid,
)
from search.bench.pareto import dominates, frontier, pareto_mask
from search.cli import app
from search.data.datasets import load_dataset
from search.evaluation.metrics import knn_recall, ndcg_at_k

runner = CliRunner()


# ------------------------------------------------------------------------------------------------ pure parts


def test_pareto_on_hand_made_points():
    points = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.8, 5.0), (0.95, 20.0), (0.7, 5.0), (0.5, 1.0), (0.9, 11.0)]
    # (0.85, 12) loses to (0.9, 10); (0.7, 5) to (0.8, 5); (0.9, 11) to (0.9, 10); equal points are both kept
    assert pareto_mask(points) == [True, True, False, True, True, False, True, False]
    assert frontier(points) == [(0.5, 1.0), (0.8, 5.0), (0.8, 5.0), (0.9, 10.0), (0.95, 20.0)]
    assert pareto_mask([]) == []
    with pytest.raises(ValueError, match="must be numbers"):
        pareto_mask([(float("nan"), 1.0)])


def test_pareto_matches_brute_force_on_random_points():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.choice([0.1, 0.5, 0.9, 1.0]), rng.choice([1.0, 2.0, 3.0])) for _ in range(rng.randint(1, 12))]
        brute = [not any(dominates(q, p) for q in points) for p in points]
        assert pareto_mask(points) == brute, points


def test_sweep_grid_only_sweeps_applicable_params_and_keeps_the_default():
    sweep = {"nprobe": (1, 2, 64, 512), "efSearch": (16, 32), "k_factor": (1, 8)}
    assert sweep_grid("Flat", sweep) == [({}, True)]
    assert sweep_grid("PQ8", sweep) == [({}, True)]
    hnsw = sweep_grid("HNSW32", sweep)
    assert [p for p, _ in hnsw] == [{"efSearch": 16}, {"efSearch": 32}, {"efSearch": 64}]  # default 64 added
    assert [d for _, d in hnsw] == [False, False, True]
    ivf = [p for p, _ in sweep_grid("IVF256,Flat", sweep)]
    assert ivf == [{"nprobe": 1}, {"nprobe": 2}, {"nprobe": 64}, {"nprobe": 16}]  # 512 > nlist skipped
    refine = [p for p, _ in sweep_grid("IVF4,PQ8,RFlat", sweep)]
    assert refine == [{"nprobe": 1, "k_factor": 1}, {"nprobe": 1, "k_factor": 8}, {"nprobe": 2, "k_factor": 1},
                      {"nprobe": 2, "k_factor": 8}, {"nprobe": 1, "k_factor": 4}]  # fmt: skip
    assert [p for p, _ in sweep_grid("IVF4,Flat", {})] == [{"nprobe": 1}]


def test_parse_encoders_labels_asymmetry_and_fp32_counterparts():
    entries = parse_encoders("teacher, st=DIR,s-int8=ONNX@teacher^st,asym=ONNX@,fake:16", default_doc_spec="DOCS")
    assert entries == (
        EncoderEntry("teacher", "teacher"),
        EncoderEntry("st", "DIR"),
        EncoderEntry("s-int8", "ONNX", "teacher", "st"),
        EncoderEntry("asym", "ONNX", "DOCS"),
        EncoderEntry("fake:16", "fake:16"),
    )
    assert parse_encoders("x=fake:8@fake:8")[0].doc_spec is None  # documents by the same model: symmetric
    assert [doc_encoder_name(e, entries) for e in entries] == ["teacher", "st", "teacher", "DOCS", "fake:16"]
    for bad, message in [("", "no encoders"), ("a=", "has no spec"), ("a=x@y@z", "two @docspec"),
                         ("a=x^", "one ^fp32label"), ("a b=x", "label 'a b'")]:  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_encoders(bad)


def test_parse_sweep_and_its_errors():
    assert parse_sweep("nprobe=1,2, 4;efSearch=16;k_factor=1.5") == (
        ("nprobe", (1, 2, 4)),
        ("efSearch", (16,)),
        ("k_factor", (1.5,)),
    )
    assert parse_sweep("") == ()
    for bad, message in [("nprobe", "bad sweep item 'nprobe'"), ("foo=1", "unknown search parameter 'foo'"),
                         ("nprobe=a", "not a number"), ("nprobe=0", "must be >= 1"), ("nprobe=", "lists no values"),
                         ("nprobe=1;nprobe=2", "appears twice")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_sweep(bad)


def test_spec_rejects_duplicates_unknown_counterparts_and_bad_numbers():
    with pytest.raises(ValueError, match="duplicate encoder labels"):
        make_bench_spec("a=fake:8,a=fake:16")
    with pytest.raises(ValueError, match="fp32 counterpart 'zz'"):
        make_bench_spec("a=fake:8^zz")
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        make_bench_spec("fake:8", repeats=0)
    with pytest.raises(ValueError, match="budget_ms must be > 0"):
        make_bench_spec("fake:8", budget_ms=-1.0)


def _row(encoder: str, recall: float, ms: float, size: float) -> dict[str, Any]:
    return {"encoder": encoder, "index": "Flat", "params": {}, "recall@10_vs_teacher": recall, "total_ms_p50": ms,
            "bytes_per_vector": size}  # fmt: skip


def test_budget_picks_the_best_fitting_row_and_says_when_none_fits():
    rows = [_row("a", 1.0, 50.0, 3072), _row("b", 0.9, 4.0, 1536), _row("c", 0.9, 3.0, 1536),
            _row("d", 0.95, 4.5, 96), _row("e", 0.6, 1.0, 48)]  # fmt: skip
    assert best_under_budget(rows, budget_ms=5.0)["best"]["encoder"] == "d"
    assert best_under_budget(rows, budget_ms=4.2)["best"]["encoder"] == "c"  # tie on recall: the faster one
    assert best_under_budget(rows, budget_bytes=1536)["best"]["encoder"] == "d"
    assert best_under_budget(rows, budget_ms=4.2, budget_bytes=100)["best"]["encoder"] == "e"
    assert best_under_budget(rows)["best"]["encoder"] == "a"
    none = best_under_budget(rows, budget_ms=0.5, budget_bytes=10)
    assert none["best"] is None
    assert "no configuration fits total_ms_p50 <= 0.5 ms and bytes_per_vector <= 10" in none["message"]
    assert "the fastest is e + Flat" in none["message"]


def test_fp32_counterparts_by_caret_or_label_pairing():
    entries = parse_encoders("st=A,st-int8=B,other-int8=C,x=D,y-int8=E^x")
    precisions = {"st": "fp32", "st-int8": "int8", "other-int8": "int8", "x": "fp32", "y-int8": "int8"}
    assert fp32_counterparts(entries, precisions) == {
        "st": "st",
        "st-int8": "st",
        "other-int8": None,
        "x": "x",
        "y-int8": "x",
    }


# ------------------------------------------------------------------------------------------------ full runs


@dataclass
class Int8Fake(FakeEncoder):
    """A fake encoder that claims to be an int8 ONNX model (for the loss split), with a little noise."""

    def encode(self, texts, kind="query", batch_size=32) -> np.ndarray:
        vectors = super().encode(texts, kind, batch_size)
        noise = np.stack([np.random.default_rng(len(t)).standard_normal(self.dim) for t in texts]) * 0.3
        out = vectors + noise.astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "type": "onnx", "precision": "int8"}


@pytest.fixture
def with_int8_fake(monkeypatch):
    real = bench.load_encoder

    def load(spec: str, threads=None):
        return Int8Fake(dim=int(spec.split(":")[1])) if spec.startswith("int8fake:") else real(spec, threads=threads)

    monkeypatch.setattr(bench, "load_encoder", load)


def _exact_ids(spec_dim: int, beir_dir, texts, k=10) -> list[list[int]]:
    encoder = FakeEncoder(dim=spec_dim)
    docs = encoder.encode([d.full_text() for d in load_dataset(str(beir_dir)).corpus], kind="passage")
    return exact_search(encoder.encode(texts), docs, k)[1].tolist()


def test_run_bench_rows_recalls_and_outputs(tmp_path, beir_dir, with_int8_fake):
    spec = BenchSpec(
        encoders=parse_encoders("teacher=fake:32,small=fake:16,small-int8=int8fake:16"),
        indexes=("Flat", "IVF4,Flat", "HNSW8", "SQ8"),
        sweep=parse_sweep("nprobe=1,2,3,4;efSearch=16,32"),
        dataset=str(beir_dir),
        teacher="fake:32",
        threads=1,
        repeats=2,
        budget_ms=1e6,
        budget_bytes=40,
        show_progress=False,
    )
    out = tmp_path / "out"
    rows = run_bench(spec, out)
    assert len(rows) == 3 * (1 + 4 + 3 + 1)
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
    flat = {row["encoder"]: row for row in rows if row["index"] == "Flat"}
    for row in flat.values():
        assert row["recall@10_vs_exact"] == 1.0
        assert row["total_ms_p50"] >= row["encode_ms_p50"] > 0
    assert flat["teacher"]["recall@10_vs_teacher"] == 1.0
    assert flat["small-int8"]["precision"] == "int8" and flat["small"]["precision"] == "fp32"

    # recall vs teacher and nDCG agree with an independent exact search
    _, texts, qrels = load_dataset(str(beir_dir)).split_queries("test")
    teacher_ids, small_ids = _exact_ids(32, beir_dir, texts), _exact_ids(16, beir_dir, texts)
    assert flat["small"]["recall@10_vs_teacher"] == pytest.approx(knn_recall(small_ids, teacher_ids, 10))
    assert flat["small"]["recall@10_vs_teacher"] < 1.0  # a 16-d hash space disagrees with the 32-d one
    doc_ids = [d.id for d in load_dataset(str(beir_dir)).corpus]
    query_ids = sorted(qrels)
    ranking = {q: [doc_ids[p] for p in ids] for q, ids in zip(query_ids, teacher_ids, strict=True)}
    assert flat["teacher"]["ndcg@10"] == pytest.approx(ndcg_at_k(ranking, qrels, 10))

    # more probes never lose recall; probing every list is exact search
    for name in ("teacher", "small"):
        ivf = sorted((r for r in rows if r["encoder"] == name and r["index"] == "IVF4,Flat"),
                     key=lambda r: r["params"]["nprobe"])  # fmt: skip
        recalls = [r["recall@10_vs_exact"] for r in ivf]
        assert [r["params"]["nprobe"] for r in ivf] == [1, 2, 3, 4]
        assert recalls == sorted(recalls) and recalls[-1] == 1.0
        assert [r["default_params"] for r in ivf] == [True, False, False, False]

    # the Pareto flags are the frontier of (recall vs teacher, total p50)
    assert [r["pareto"] for r in rows] == pareto_mask([(r["recall@10_vs_teacher"], r["total_ms_p50"]) for r in rows])

    for name in ("results.json", "results.csv", "results.md", "machine.json", "loss_split.json", "summary.json",
                 "recall_vs_latency.png", "ndcg_vs_latency.png", "recall_vs_bytes.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (out / "recall_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "results.json").read_text())
    assert len(on_disk) == len(rows) and all(set(ROW_KEYS) <= set(r) for r in on_disk)
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cores"] >= 1 and "faiss-cpu" in machine["versions"]

    summary = json.loads((out / "summary.json").read_text())
    best = summary["budget"]["best"]
    fitting = [r for r in rows if r["bytes_per_vector"] <= 40]
    assert best["recall@10_vs_teacher"] == max(r["recall@10_vs_teacher"] for r in fitting)
    assert best["index"] == "SQ8"  # 32 bytes for 32 dims; every other index stores more
    markdown = (out / "results.md").read_text()
    assert "## Where the recall goes" in markdown and "best under" in markdown

    losses = {item["encoder"]: item for item in json.loads((out / "loss_split.json").read_text())["encoders"]}
    assert losses["small"]["student_vs_teacher"]["loss"] == pytest.approx(1 - flat["small"]["recall@10_vs_teacher"])
    int8 = losses["small-int8"]
    assert int8["fp32_counterpart"] == "small"  # paired by label
    assert int8["int8_vs_fp32"]["loss"] == pytest.approx(
        flat["small"]["recall@10_vs_teacher"] - flat["small-int8"]["recall@10_vs_teacher"]
    )
    assert 0.0 <= int8["int8_vs_fp32"]["top10_overlap_with_fp32"] < 1.0  # the noise moves some neighbours
    ivf_default = next(r for r in rows if r["encoder"] == "small" and r["index"] == "IVF4,Flat" and r["default_params"])
    assert losses["small"]["ann_vs_exact"]["IVF4,Flat"]["loss"] == pytest.approx(1 - ivf_default["recall@10_vs_exact"])
    assert losses["teacher"]["int8_vs_fp32"] is None


def test_untrainable_index_is_skipped_and_reported(tmp_path, beir_dir):
    spec = make_bench_spec("fake:8", "Flat;IVF256,Flat", dataset=str(beir_dir), teacher="fake:8", threads=1,
                           repeats=1, show_progress=False)  # fmt: skip
    rows = run_bench(spec, tmp_path / "out")
    assert [r["index"] for r in rows] == ["Flat"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"][0]["index"] == "IVF256,Flat" and "256" in summary["skipped"][0]["reason"]
    assert summary["budget"] is None
    with pytest.raises(ValueError, match="no configuration could be built"):
        run_bench(make_bench_spec("fake:8", "IVF256,Flat", dataset=str(beir_dir), teacher="fake:8",
                                  show_progress=False), tmp_path / "none")  # fmt: skip


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_bench_runs_and_prints_the_budget_pick(tmp_path, beir_dir):
    out = tmp_path / "cli"
    args = ["bench", "--dataset", str(beir_dir), "--teacher", "fake:16", "--encoders", "t=fake:16,s=fake:8",
            "--indexes", "Flat;IVF4,Flat", "--sweep", "nprobe=1,4", "--repeats", "1", "--threads", "1",
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--budget-ms", "0.000001"])
    assert result.exit_code == 0, result.output
    assert "no configuration fits total_ms_p50 <= 1e-06 ms" in result.output
    as_json = runner.invoke(app, [*args, "--budget-bytes", "1000", "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.output)
    assert len(payload["rows"]) == 2 * 3 and payload["budget"]["best"]["recall@10_vs_teacher"] == 1.0
    assert (out / "results.md").exists() and (out / "recall_vs_latency.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--indexes", "LSH"], "unsupported index factory 'LSH'"),
        (["--indexes", "PQ5"], "PQ/OPQ size 5 must divide the vector dimension 16"),
        (["--sweep", "nprobe"], "bad sweep item 'nprobe'"),
        (["--sweep", "nprobe=1;foo=2"], "unknown search parameter 'foo'"),
        (["--encoders", "nope"], "unknown model 'nope'"),
        (["--encoders", "a=fake:16,b=fake:8@fake:16"], "8-d queries cannot search 16-d documents"),
        (["--split", "dev"], "no qrels for split 'dev'"),
        (["--repeats", "0"], "repeats must be >= 1"),
    ],
)
def test_cli_bench_bad_inputs_exit_2_naming_the_problem(tmp_path, beir_dir, extra, message):
    args = ["bench", "--dataset", str(beir_dir), "--teacher", "fake:16", "--encoders", "fake:16",
            "--out", str(tmp_path / "bad"), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert not (tmp_path / "bad" / "results.json").exists()
