import csv
import json

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from indexes.exact import exact_search
from search.bench.scale import (
    FILES,
    ScaleBenchSpec,
    default_nlist,
    load_source_vectors,
    make_vectors,
    run_scale_bench,
)
from search.cli import app
from semsearch_common.threads import available_cores

runner = CliRunner()


def test_run_scores_against_exact_search_and_writes_outputs(tmp_path, source_npy):
    indexes = ("Flat", "IVF{nlist},PQ{m}", "IVF{nlist},PQ{m},RFlat", "HNSW32")
    spec = ScaleBenchSpec(vectors=source_npy, sizes=(5000, 2000), indexes=indexes, queries=100, latency_queries=20,
                          repeats=1, train_sample=5000, skip=("HNSW32@2000",), note="test run", threads=1)  # fmt: skip
    out = tmp_path / "scale"
    omp_threads = []  # FAISS's OpenMP pool while the rows run: limited to spec.threads by threadpoolctl alone
    result = run_scale_bench(spec, out, on_row=lambda row: omp_threads.append(faiss.omp_get_max_threads()))
    assert omp_threads == [1] * 7
    rows = {(row["n"], row["index"]): row for row in result["rows"]}
    assert len(rows) == 7
    assert (2000, "HNSW32") not in rows
    assert result["skipped"] == [{"n": 2000, "index": "HNSW32", "factory": "HNSW32"}]
    for n in (2000, 5000):
        assert rows[(n, "Flat")]["recall@10"] == 1.0
        assert rows[(n, "IVF{nlist},PQ{m},RFlat")]["recall@10"] >= rows[(n, "IVF{nlist},PQ{m}")]["recall@10"]
        assert rows[(n, "Flat")]["bytes_per_vector"] == 32 * 4
        assert rows[(n, "IVF{nlist},PQ{m}")]["factory"] == f"IVF{default_nlist(n)},PQ4"
    for row in result["rows"]:
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"]
        assert row["build_s"] >= row["train_s"] >= 0
        assert row["peak_rss_mb"] >= row["rss_before_build_mb"] > 0
        assert row["peak_rss_added_mb"] == pytest.approx(row["peak_rss_mb"] - row["rss_before_build_mb"])
    assert rows[(5000, "IVF{nlist},PQ{m}")]["bytes_per_vector"] < 32  # 4-byte PQ codes + ids, not 128-byte floats
    assert rows[(5000, "IVF{nlist},PQ{m}")]["search_params"] == {"nprobe": default_nlist(5000) // 16, "oversample": 4}
    assert rows[(5000, "HNSW32")]["search_params"] == {"efSearch": 64}

    # the recorded statistics match a recomputation from regenerated vectors; the run made them under a 1-thread
    # limit, so BLAS may have summed in another order: compare with tolerances (a near-tie may swap in the top-k)
    source = load_source_vectors(source_npy)
    base, base_src, queries, query_src = make_vectors(source, 2000, 100, seed=0)  # default: mix
    scores, truth = exact_search(queries, base, 10)
    stats = result["vectors"]["per_size"]["2000"]
    share = (base_src[truth] == query_src[:, None]).mean()
    assert stats["same_source_fraction_of_exact_top_k"] == pytest.approx(share, abs=0.01)
    assert stats["mean_exact_topk_last_score"] == pytest.approx(scores[:, -1].mean(), abs=1e-5)
    nearest = (queries @ source.T).max(axis=1).mean()
    assert stats["mean_cosine_to_nearest_source_queries"] == pytest.approx(nearest, abs=1e-5)
    pairwise = source @ source.T
    np.fill_diagonal(pairwise, -np.inf)
    ranked = -np.sort(-pairwise, axis=1)
    assert result["vectors"]["source_nearest_other_source_cosine"] == pytest.approx(ranked[:, 0].mean(), abs=1e-5)
    assert result["vectors"]["source_kth_other_source_cosine"] == pytest.approx(ranked[:, 9].mean(), abs=1e-5)
    profile = result["vectors"]["profile_vs_n"]
    assert list(profile) == ["37", "75", "150"]  # 150 sources held out as queries, the others in growing sets
    for m, row in profile.items():
        assert row["synthetic_top1"] == pytest.approx(exact_search(queries, base[: int(m)], 1)[0].mean(), abs=1e-5)
        assert 0 < row["real_topk_last"] < row["real_top1"] <= 1

    for name in FILES:
        assert (out / name).is_file(), name
    saved = json.loads((out / "scale.json").read_text())
    assert len(saved["rows"]) == 7
    assert saved["machine"]["threads"] == 1
    assert saved["machine"]["faiss"] == faiss.__version__
    assert "openmp 1" in saved["machine"]["thread_control"]
    assert "generator mix" in saved["vectors"]["method"]
    assert saved["note"] == "test run"
    assert saved["vectors"]["generator"] == "mix"
    assert saved["vectors"]["target_cosine"] == 0.87
    with (out / "scale.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 7
    markdown = (out / "scale.md").read_text()
    assert "| 2,000 | HNSW32 | HNSW32 | skipped" in markdown
    assert "Note: test run" in markdown
    assert "dominant source" in markdown
    assert "| 150 |" in markdown
    assert (out / "scale_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_runs_and_reports(tmp_path, source_npy):
    out = tmp_path / "cli"
    args = ["bench-scale", "--vectors", str(source_npy), "--size", "2000", "--index", "Flat", "--index", "HNSW32",
            "--queries", "30", "--latency-queries", "10", "--repeats", "1", "--out", str(out), "--json",
            "--generator", "noise"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "recall@10 1.0000" in summary["N=2000 Flat"]
    assert summary["out"] == str(out)
    saved = json.loads((out / "scale.json").read_text())
    assert len(saved["rows"]) == 2
    assert saved["spec"]["generator"] == "noise"
    assert saved["machine"]["threads"] == available_cores()  # no --threads: every core this process may use
    assert "i % n_sources" in saved["vectors"]["method"]
    assert saved["vectors"]["target_cosine"] == 0.85


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vectors", "missing.npy"], "not found"),
        (["--vectors", "embeddings.txt"], ".npy"),
        (["--size", "5"], "too small"),
        (["--index", "LSH"], "supported forms"),
        (["--index", "IVF{x},Flat"], "placeholders"),
        (["--index", "IVF4096,Flat"], "training vectors"),
        (["--skip", "HNSW32"], "FACTORY@N"),
        (["--skip", "HNSW32@999"], "matches no run"),
        (["--mix-neighbours", "0"], ">= 1"),
        (["--mix-alpha", "0"], "> 0"),
        (["--target-cosine", "1.5"], "(0, 1)"),
        (["--latency-queries", "500", "--queries", "100"], "cannot exceed"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, source_npy, extra, message):
    args = ["bench-scale", "--vectors", str(source_npy), "--size", "2000", "--out", str(tmp_path / "o")]
    if extra[0] == "--vectors":
        args[2] = str(tmp_path / extra[1])
        extra = []
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2
    assert "error:" in result.output
    assert message in result.output
    assert not (tmp_path / "o" / "scale.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "10k"], "'--size': Input should be a valid integer"),
        (["--noise", "pink"], "'pink' is not one of 'data', 'isotropic'"),
        (["--generator", "blend"], "'blend' is not one of 'mix', 'noise'"),
    ],
)
def test_cli_refuses_a_bad_value_with_a_usage_error(tmp_path, source_npy, usage_error, extra, message):
    args = ["bench-scale", "--vectors", str(source_npy), "--size", "2000", "--out", str(tmp_path / "o"), *extra]
    usage_error(runner.invoke(app, args), message)
    assert not (tmp_path / "o").exists()


def test_index_dirs_are_measured_as_served_in_a_fresh_process(tmp_path, source_npy):
    """Each index saved with its vector file and document store, opened in a child process: the same recall as the
    in-process search (both rescore the same candidates from fp16 rows), resident bytes at least the index file read
    into RAM, warm and cold latencies, and the directory removed afterwards."""
    spec = ScaleBenchSpec(vectors=source_npy, sizes=(3000,), indexes=("IVF{nlist},RaBitQfs", "Flat"), queries=60,
                          latency_queries=20, repeats=1, train_sample=3000, threads=1, index_dirs=True,
                          warm_queries=60, cold_queries=5)  # fmt: skip
    result = run_scale_bench(spec, tmp_path / "out")
    for row in result["rows"]:
        served = row["served"]
        assert served["n"] == 3000
        assert served["recall@10"] == pytest.approx(row["recall@10"], abs=0.02)
        index_file = served["on_disk_bytes"]["index.faiss"]
        assert served["resident_bytes"] >= 0.8 * index_file  # index.faiss read whole into the heap
        assert served["resident_bytes_per_vector"] == pytest.approx(served["resident_bytes"] / 3000)
        assert "vectors.npy" not in served["mapped_by_file"]  # reported apart, never counted as resident
        assert served["on_disk_bytes"]["vectors.npy"] >= 3000 * 32 * 2  # fp16 rows
        assert 0 < served["warm_ms_p50"] and 0 < served["cold_ms_p50"] and 0 < served["cold_prefetch_ms_p50"]
        assert row["qps_batch64"] > 0
        assert served["rescore"] == ("vector_file" if row["factory"] != "Flat" else None)
    assert "Served from an index directory" in (tmp_path / "out" / "scale.md").read_text()
    assert not list((tmp_path / "out").glob(".scale-*")), "the index directories are removed"
