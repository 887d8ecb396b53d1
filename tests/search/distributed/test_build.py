"""Index builds on Ray: shards filled in tasks and merged equal the single-process build of the same trained index;
a dying shard task is retried by Ray; a build killed after 2 of 4 shards resumes and ends identical; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec, build_index
from indexes.shards import shard_is_complete, shard_ranges
from indexes.store import index_memory
from search.cli import app as cli
from search.data.datasets import load_beir
from search.distributed.build import CRASH_ENV, ShardedBuilder, ShardSpec, build_index_dir_ray, shard_name
from search.distributed.engine import RaySpec
from search.pipeline import Pipeline, build_index_dir

GAP = 1e-5  # ids are compared only where neighbouring scores differ by more than this
ROOT = Path(__file__).resolve().parents[3]


def assert_same_results(reference, candidate, queries: np.ndarray, k: int = 10) -> None:
    """Same top-k ids where the scores are separated by more than GAP, and scores allclose."""
    want_scores, want_ids = reference.search(queries, k)
    got_scores, got_ids = candidate.search(queries, k)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    for w_ids, g_ids, w_scores in zip(want_ids, got_ids, want_scores, strict=True):
        for rank in range(k):
            separated = (rank == 0 or w_scores[rank - 1] - w_scores[rank] > GAP) and (
                rank == k - 1 or w_scores[rank] - w_scores[rank + 1] > GAP
            )
            if separated:
                assert g_ids[rank] == w_ids[rank]


@pytest.fixture
def vectors(unit_vectors) -> tuple[np.ndarray, np.ndarray]:
    data = unit_vectors(6000, 32, seed=1)
    return data[:5000], data[5000:5050]


@pytest.mark.parametrize(("factory", "kind"), [("IVF32,PQ8", "ondisk"), ("SQ8", "in_memory"), ("HNSW16", "driver")])
def test_sharded_build_equals_the_single_process_build(ray_local, tmp_path, vectors, factory, kind):
    corpus, queries = vectors
    spec = IndexSpec(factory, seed=3)
    local = build_index(corpus, spec).index
    builder = ShardedBuilder(tmp_path / "work", ShardSpec(4), RaySpec(workers=2))
    built = builder(corpus, spec)
    assert builder.merged_kind == kind
    assert built.index.ntotal == len(corpus)
    if kind != "driver":
        assert builder.shards_built == 4
    if kind == "ondisk":
        assert (tmp_path / "work" / "lists.ivfdata").stat().st_size > 0
        for index in (local, built.index):
            index.nprobe = 8
    assert_same_results(local, built.index, queries)


def test_a_dying_shard_task_is_retried_by_ray(ray_local, tmp_path, vectors):
    corpus, queries = vectors
    spec = IndexSpec("IVF32,PQ8", seed=3)
    marker = tmp_path / "died"
    builder = ShardedBuilder(tmp_path / "work", ShardSpec(4), RaySpec(workers=2), fail_once=str(marker))
    built = builder(corpus, spec)
    assert marker.exists()  # one task's worker process died
    local = build_index(corpus, spec).index
    for index in (local, built.index):
        index.nprobe = 8
    assert_same_results(local, built.index, queries)


CRASHING_BUILD = r"""
import sys, numpy as np
from pathlib import Path
from indexes.faiss_index import IndexSpec
from search.distributed.build import ShardedBuilder, ShardSpec
from search.distributed.engine import RaySpec, ray_session
corpus = np.load(sys.argv[1])
spec = RaySpec(workers=1)
with ray_session(spec):
    ShardedBuilder(Path(sys.argv[2]), ShardSpec(4), spec)(corpus, IndexSpec("IVF32,PQ8", seed=3))
"""


def test_a_killed_build_resumes_from_its_shards(ray_local, tmp_path, vectors):
    corpus, queries = vectors
    np.save(tmp_path / "corpus.npy", corpus)
    work = tmp_path / "work"
    env = {**os.environ, CRASH_ENV: "2", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    died = subprocess.run([sys.executable, "-c", CRASHING_BUILD, str(tmp_path / "corpus.npy"), str(work)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert died.returncode == 17, died.stderr[-2000:]
    ranges = shard_ranges(len(corpus), 4)
    written = [shard_name(i) for i, (a, b) in enumerate(ranges) if shard_is_complete(work / shard_name(i), a, b - a)]
    # the driver died after 2 shards; with 1 CPU, the one task already running may still finish after its death
    assert written[:2] == [shard_name(0), shard_name(1)], written
    assert len(written) <= 3, written
    stamps = {name: (work / name).stat().st_mtime_ns for name in written}

    builder = ShardedBuilder(work, ShardSpec(4), RaySpec(workers=2))
    built = builder(corpus, IndexSpec("IVF32,PQ8", seed=3))
    assert builder.shards_reused >= len(written)
    assert builder.shards_built >= 1
    assert builder.shards_reused + builder.shards_built == 4
    assert {name: (work / name).stat().st_mtime_ns for name in written} == stamps  # reused, not rebuilt
    local = build_index(corpus, IndexSpec("IVF32,PQ8", seed=3)).index
    for index in (local, built.index):
        index.nprobe = 8
    assert_same_results(local, built.index, queries)


def test_index_dir_built_on_ray_serves_like_the_local_one(ray_local, tmp_path, beir_dir):
    dataset = load_beir(beir_dir)
    spec = IndexSpec("IVF4,Flat", seed=0, search_params={"nprobe": 4})
    local = build_index_dir(dataset, FakeEncoder(dim=32), spec, tmp_path / "local", show_progress=False)
    report = build_index_dir_ray(dataset, FakeEncoder(dim=32), "fake:32", spec, tmp_path / "ray",
                                 RaySpec(workers=2), ShardSpec(3), show_progress=False)  # fmt: skip
    meta = report.meta
    assert meta["engine"]["name"] == "ray"
    assert meta["engine"]["merge"] == "ondisk"
    assert meta["embedding_key"] == local.meta["embedding_key"]  # the same cache entry
    assert (tmp_path / "ray" / "lists.ivfdata").is_file()
    assert not list(tmp_path.glob(".ray.shards-*"))  # the work folder is gone
    moved = tmp_path / "elsewhere"
    (tmp_path / "ray").rename(moved)  # the lists are found beside index.faiss, wherever the folder goes
    for mmap in (False, True):
        here, there = Pipeline.load(tmp_path / "local"), Pipeline.load(moved, mmap=mmap)
        for query in ("vitamin bone", "tumor cells", "heart failure"):
            want = [(h.id, h.score) for h in here.search(query, 10).hits]
            got = [(h.id, h.score) for h in there.search(query, 10).hits]
            assert [i for i, _ in got] == [i for i, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)
    memory = index_memory(Pipeline.load(moved, mmap=True).stored)
    assert memory["on_disk_bytes"] == sum((moved / name).stat().st_size for name in ("index.faiss", "lists.ivfdata"))


def test_cli_index_on_ray_and_bad_engine(ray_local, tmp_path, beir_dir, usage_error):
    runner = CliRunner()
    args = ["index", "--dataset", str(beir_dir), "--encoder", "fake:32", "--index", "IVF4,Flat", "--json"]
    result = runner.invoke(cli, [*args, "--out", str(tmp_path / "ix"), "--engine", "ray", "--workers", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["engine"] == "ray"
    assert summary["documents"] == len(load_beir(beir_dir).corpus)
    bad = runner.invoke(cli, [*args, "--out", str(tmp_path / "ix2"), "--engine", "spark"])
    usage_error(bad, "'spark' is not one of 'local', 'ray'")
