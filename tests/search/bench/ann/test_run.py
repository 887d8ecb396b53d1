import csv
import json
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

import search.bench.ann.run as bench_run
from compression.encoders import FakeEncoder
from indexes.exact import exact_search
from search.bench.ann import ROW_KEYS, BenchSpec, make_bench_spec, parse_encoders, parse_sweep, run_bench
from search.cli import app
from search.data.datasets import load_dataset
from search.evaluation.metrics import knn_recall, ndcg_at_k

runner = CliRunner()


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
    real = bench_run.load_encoder

    def load(spec: str, threads=None):
        return Int8Fake(dim=int(spec.split(":")[1])) if spec.startswith("int8fake:") else real(spec, threads=threads)

    monkeypatch.setattr(bench_run, "load_encoder", load)


def _exact(encoder: FakeEncoder, beir_dir, texts, k=10) -> tuple[np.ndarray, list[list[int]]]:
    """An independent exact search: all scores, and the top-k positions (checked free of near-ties at rank k)."""
    docs = encoder.encode([d.full_text() for d in load_dataset(str(beir_dir)).corpus], kind="passage")
    scores = encoder.encode(texts) @ docs.T
    ranked = np.sort(scores, axis=1)[:, ::-1]
    assert (ranked[:, k - 1] - ranked[:, k] > 1e-4).all(), "near-tie at rank k: the top-k set is not well defined"
    return scores, exact_search(encoder.encode(texts), docs, k)[1].tolist()


def brute_force_pareto(points: list[tuple[float, float]]) -> list[bool]:
    return [not any(q >= pq and c <= pc and (q > pq or c < pc) for q, c in points) for pq, pc in points]


def test_run_bench_rows_recalls_and_outputs(tmp_path, beir_dir, with_int8_fake, monkeypatch):
    spec = BenchSpec(
        encoders=parse_encoders(["teacher=fake:32", "small=fake:16", "small-int8=int8fake:16"]),
        indexes=("Flat", "IVF4,Flat", "HNSW8", "SQ8"),
        sweep=parse_sweep(["nprobe=1,2,3,4", "efSearch=16,32"]),
        dataset=str(beir_dir),
        teacher="fake:32",
        threads=1,
        repeats=2,
        budget_ms=1e6,
        budget_bytes=40,
        show_progress=False,
    )
    omp_threads = []  # FAISS's OpenMP pool while each index is measured: limited to spec.threads by threadpoolctl
    real_bench_index = bench_run.bench_index

    def bench_index(*args, **kwargs):
        omp_threads.append(faiss.omp_get_max_threads())
        return real_bench_index(*args, **kwargs)

    monkeypatch.setattr(bench_run, "bench_index", bench_index)
    omp_before = faiss.omp_get_max_threads()
    out = tmp_path / "out"
    rows = run_bench(spec, out)
    assert omp_threads == [1] * 12
    assert faiss.omp_get_max_threads() == omp_before  # limited, then restored
    assert len(rows) == 3 * (1 + 4 + 3 + 1)
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        assert 0 < row["encode_ms_p50"] < row["total_ms_p50"] <= row["total_ms_p95"]
    flat = {row["encoder"]: row for row in rows if row["index"] == "Flat"}
    assert flat["small-int8"]["precision"] == "int8"
    assert flat["small"]["precision"] == "fp32"

    # recalls and nDCG agree with an independent exact search (no near-ties at rank 10 in this data)
    _, texts, qrels = load_dataset(str(beir_dir)).split_queries("test")
    (_, teacher_ids), (_, small_ids) = (
        _exact(FakeEncoder(32), beir_dir, texts),
        _exact(FakeEncoder(16), beir_dir, texts),
    )
    _, int8_ids = _exact(Int8Fake(16), beir_dir, texts)
    assert [flat[name]["recall@10_vs_exact"] for name in flat] == [1.0, 1.0, 1.0]
    assert flat["teacher"]["recall@10_vs_teacher"] == 1.0
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
        assert recalls == sorted(recalls)
        assert recalls[-1] == 1.0
        assert [r["default_params"] for r in ivf] == [True, False, False, False]

    # the Pareto flags are the frontier of (recall vs teacher, total p50), by the O(n^2) definition
    points = [(r["recall@10_vs_teacher"], r["total_ms_p50"]) for r in rows]
    assert [r["pareto"] for r in rows] == brute_force_pareto(points)

    for name in ("results.json", "results.csv", "results.md", "machine.json", "loss_split.json", "summary.json",
                 "recall_vs_latency.png", "ndcg_vs_latency.png", "recall_vs_bytes.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (out / "recall_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(rows))
    with (out / "results.csv").open() as handle:
        assert [r["encoder"] for r in csv.DictReader(handle)] == [r["encoder"] for r in rows]
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cores"] == psutil.cpu_count(logical=True)
    assert machine["threads"] == 1
    assert machine["faiss_omp_threads"] == 1  # recorded inside the thread limit
    assert machine["versions"]["faiss-cpu"] is not None

    summary = json.loads((out / "summary.json").read_text())
    best = summary["budget"]["best"]
    fitting = [r for r in rows if r["bytes_per_vector"] <= 40]
    assert best["recall@10_vs_teacher"] == max(r["recall@10_vs_teacher"] for r in fitting)
    assert best["index"] == "SQ8"  # 32 bytes for 32 dims; every other index stores more
    assert len(summary["pareto"]) == sum(r["pareto"] for r in rows)
    markdown = (out / "results.md").read_text()
    assert "## Where the recall goes" in markdown
    assert "best under" in markdown

    losses = {item["encoder"]: item for item in json.loads((out / "loss_split.json").read_text())["encoders"]}
    assert losses["small"]["student_vs_teacher"]["loss"] == pytest.approx(1 - flat["small"]["recall@10_vs_teacher"])
    int8 = losses["small-int8"]
    assert int8["fp32_counterpart"] == "small"  # paired by label
    assert int8["int8_vs_fp32"]["loss"] == pytest.approx(
        flat["small"]["recall@10_vs_teacher"] - flat["small-int8"]["recall@10_vs_teacher"]
    )
    overlap = knn_recall(int8_ids, small_ids, 10)
    assert int8["int8_vs_fp32"]["top10_overlap_with_fp32"] == pytest.approx(overlap)
    assert overlap < 1.0  # noise
    ivf_default = next(r for r in rows if r["encoder"] == "small" and r["index"] == "IVF4,Flat" and r["default_params"])
    assert losses["small"]["ann_vs_exact"]["IVF4,Flat"]["loss"] == pytest.approx(1 - ivf_default["recall@10_vs_exact"])
    assert losses["teacher"]["int8_vs_fp32"] is None


def test_max_queries_keeps_the_first_queries(tmp_path, beir_dir):
    spec = make_bench_spec(["fake:8"], dataset=str(beir_dir), teacher="fake:8", threads=1, repeats=1, max_queries=3,
                           show_progress=False)  # fmt: skip
    rows = run_bench(spec, tmp_path / "out")
    assert rows[0]["queries"] == 3
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["queries"] == 3


def test_untrainable_index_is_skipped_and_reported(tmp_path, beir_dir):
    spec = make_bench_spec(["fake:8"], ["Flat", "IVF256,Flat"], dataset=str(beir_dir), teacher="fake:8", threads=1,
                           repeats=1, show_progress=False)  # fmt: skip
    rows = run_bench(spec, tmp_path / "out")
    assert [r["index"] for r in rows] == ["Flat"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"][0]["index"] == "IVF256,Flat"
    assert "256" in summary["skipped"][0]["reason"]
    assert summary["budget"] is None
    with pytest.raises(ValueError, match="no configuration could be built"):
        run_bench(make_bench_spec(["fake:8"], ["IVF256,Flat"], dataset=str(beir_dir), teacher="fake:8",
                                  show_progress=False), tmp_path / "none")  # fmt: skip


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_bench_runs_and_prints_the_budget_pick(tmp_path, beir_dir):
    out = tmp_path / "cli"
    args = ["bench", "--dataset", str(beir_dir), "--teacher", "fake:16", "--encoder", "t=fake:16", "--encoder",
            "s=fake:8", "--index", "Flat", "--index", "IVF4,Flat", "--sweep", "nprobe=1,4", "--repeats", "1",
            "--threads", "1", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, [*args, "--budget-ms", "0.000001"])
    assert result.exit_code == 0, result.output
    assert "no configuration fits total_ms_p50 <= 1e-06 ms" in result.output
    as_json = runner.invoke(app, [*args, "--budget-bytes", "1000", "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)  # progress goes to stderr
    assert len(payload["rows"]) == 2 * 3
    assert payload["budget"]["best"]["recall@10_vs_teacher"] == 1.0
    assert (out / "results.md").exists()
    assert (out / "recall_vs_latency.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--index", "LSH"], "unsupported index factory 'LSH'"),
        (["--index", "Flat", "--index", "PQ5"], "PQ/OPQ size 5 must divide the vector dimension 16"),
        (["--sweep", "nprobe"], "bad sweep item 'nprobe'"),
        (["--sweep", "nprobe=1", "--sweep", "foo=2"], "unknown search parameter 'foo'"),
        (["--encoder", "nope"], "unknown model 'nope'"),
        (["--encoder", "a=fake:16", "--encoder", "b=fake:8@fake:16"], "8-d queries cannot search 16-d documents"),
        (["--split", "dev"], "no qrels for split 'dev'"),
        (["--repeats", "0"], "repeats must be >= 1"),
    ],
)
def test_cli_bench_bad_inputs_exit_2_naming_the_problem(tmp_path, beir_dir, extra, message):
    args = ["bench", "--dataset", str(beir_dir), "--teacher", "fake:16", "--encoder", "fake:16",
            "--out", str(tmp_path / "bad"), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert not (tmp_path / "bad" / "results.json").exists()
