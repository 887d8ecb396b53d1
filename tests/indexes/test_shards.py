"""An index filled per shard and merged equals the same trained index filled in one go (ids are the global positions,
whichever shard a vector went to); which indexes merge how; shard records a resumed build can trust; the merge
leaves no shard mapped and never truncates a lists file in place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import psutil
import pytest

from indexes.faiss_index import IndexSpec, apply_search_params, build_index, import_faiss, openmp_threads, train_index
from indexes.shards import (
    ShardInfo,
    fill_shard,
    merge_kind,
    merge_shards,
    read_index_file,
    read_shard_info,
    record_path,
    shard_is_complete,
    shard_ranges,
    write_index_file,
)

K = 10
PARAMS = {"nprobe": 8}
TRAIN = 600  # training sample: enough for 64 lists and 256 PQ centroids, and OPQ trains in seconds


@pytest.fixture(autouse=True, scope="module")
def one_openmp_thread():
    """FAISS on one OpenMP thread here: these small trainings (OPQ above all) run several times faster without a team
    spinning on a busy machine, and every comparison is made under the same setting."""
    with openmp_threads(1):
        yield


@pytest.fixture(scope="module")
def data(unit_vectors) -> tuple[np.ndarray, np.ndarray]:
    both = unit_vectors(4050, 32, seed=2)
    return both[:4000], both[4000:]


def fill_all(folder: Path, vectors: np.ndarray, trained_path: Path, shards: int = 4) -> list[Path]:
    paths = []
    for number, (start, stop) in enumerate(shard_ranges(len(vectors), shards)):
        paths.append(folder / f"shard-{number:05d}.index")
        fill_shard(trained_path, vectors[start:stop], start, paths[-1])
    return paths


def in_one_go(trained_path: Path, vectors: np.ndarray):
    """The reference: the same trained index, every vector added in order in one process (as `build_index` does)."""
    index = read_index_file(trained_path)
    index.add(vectors)
    return index


def _ivf_or_none(index):
    try:
        return import_faiss().extract_index_ivf(index)
    except RuntimeError:
        return None


def search_both(reference, candidate, queries, assert_same_ranking) -> None:
    for index in (reference, candidate):
        if _ivf_or_none(index) is not None:
            apply_search_params(index, PARAMS)
    want_scores, want_ids = reference.search(queries, K)
    got_scores, got_ids = candidate.search(queries, K)
    assert (want_ids >= 0).all()
    for row in range(len(queries)):
        assert_same_ranking(got_ids[row], got_scores[row], want_ids[row], want_scores[row])


@pytest.mark.parametrize(
    ("factory", "kind"),
    [("IVF64,PQ8", "ondisk"), ("OPQ8,IVF64,PQ8", "ondisk"), ("IVF64,Flat", "ondisk"), ("Flat", "in_memory"),
     ("SQ8", "in_memory"), ("PQ8", "in_memory"), ("SQ4", "in_memory"), ("SQfp16", "in_memory"),
     ("RaBitQ", "in_memory"), ("RaBitQ4", "in_memory"), ("IVF64,SQ8", "ondisk"), ("IVF64,RaBitQ", "ondisk"),
     ("IVF64_HNSW32,Flat", "ondisk")],
)  # fmt: skip
def test_shards_merged_equal_the_same_trained_index_filled_in_one_go(
    tmp_path, data, assert_same_ranking, factory, kind
):
    vectors, queries = data
    trained, _ = train_index(vectors, IndexSpec(factory, train_sample=TRAIN, seed=1))
    assert trained.ntotal == 0
    assert merge_kind(trained) == kind == merge_kind(factory)
    write_index_file(trained, tmp_path / "trained.index")
    paths = fill_all(tmp_path, vectors, tmp_path / "trained.index")
    ivfdata = tmp_path / "lists.ivfdata" if kind == "ondisk" else None
    merged = merge_shards(tmp_path / "trained.index", paths, ivfdata, out_index_path=tmp_path / "merged.index")
    assert merged.ntotal == len(vectors)
    search_both(in_one_go(tmp_path / "trained.index", vectors), merged, queries, assert_same_ranking)
    search_both(merged, read_index_file(tmp_path / "merged.index"), queries, assert_same_ranking)  # written whole
    if kind == "ondisk":
        assert ivfdata.stat().st_size >= len(vectors) * 8  # every id (and code) went to the lists file
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file is left"


def test_a_vector_keeps_its_global_position_whichever_shard_it_went_to(tmp_path, data):
    vectors, _ = data
    for factory in ("IVF64,Flat", "Flat"):
        folder = tmp_path / factory.replace(",", "_")
        folder.mkdir()
        trained, _ = train_index(vectors, IndexSpec(factory))
        write_index_file(trained, folder / "trained.index")
        paths = fill_all(folder, vectors, folder / "trained.index", shards=3)
        merged = merge_shards(folder / "trained.index", paths, folder / "lists.ivfdata")
        if factory.startswith("IVF"):
            apply_search_params(merged, {"nprobe": 64})  # every list: exact
        picks = np.array([0, 1333, 1334, 2666, 2667, 3999])  # the edges of the 3 shards
        _, ids = merged.search(vectors[picks], 1)
        np.testing.assert_array_equal(ids[:, 0], picks)


def test_build_index_is_train_index_then_add(data, assert_same_ranking):
    vectors, queries = data
    spec = IndexSpec("IVF64,Flat", train_sample=TRAIN, seed=3, search_params=PARAMS)
    trained, seconds = train_index(vectors, spec)
    assert trained.ntotal == 0
    assert trained.is_trained
    assert seconds >= 0
    trained.add(vectors)
    search_both(build_index(vectors, spec).index, trained, queries, assert_same_ranking)


@pytest.mark.parametrize("factory", ["HNSW16", "HNSW16,SQ8", "IVF64,PQ8,RFlat", "SQ8,RFlat"])
def test_graph_and_refine_indexes_are_filled_in_one_process(tmp_path, factory):
    assert merge_kind(factory) == "driver"
    index = import_faiss().index_factory(32, factory, import_faiss().METRIC_INNER_PRODUCT)
    assert merge_kind(index) == "driver"
    write_index_file(index, tmp_path / "trained.index")
    with pytest.raises(ValueError, match="cannot be merged from shards.*HNSW links vectors across shards"):
        merge_shards(tmp_path / "trained.index", [], None)


@pytest.mark.parametrize("factory", ["PQ8x4fs", "IVF64,PQ8x4fs", "IVF64,PQ8x4fsr", "RaBitQfs", "IVF64,RaBitQfs"])
def test_fast_scan_indexes_keep_block_codes_and_are_filled_in_one_process(factory):
    assert merge_kind(factory) == "driver"  # their codes are laid out in blocks that neither merge reads


def test_merge_kind_refuses_unknown_factories():
    with pytest.raises(ValueError, match="unsupported index factory 'IVF64,LSH'; supported forms: Flat"):
        merge_kind("IVF64,LSH")


def test_shard_ranges_cover_everything_once_in_order():
    assert shard_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_ranges(5, 5) == [(i, i + 1) for i in range(5)]
    assert shard_ranges(7, 1) == [(0, 7)]
    for n, shards in ((1000, 7), (10, 4)):
        ranges = shard_ranges(n, shards)
        assert ranges[0][0] == 0
        assert ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    for bad in (0, 6):
        with pytest.raises(ValueError, match=r"shards must be 1\.\.5"):
            shard_ranges(5, bad)
    with pytest.raises(ValueError, match="nothing to shard"):
        shard_ranges(0, 1)


@pytest.fixture
def one_shard(tmp_path, unit_vectors) -> tuple[Path, Path, np.ndarray]:
    vectors = unit_vectors(1000, 16)
    trained, _ = train_index(vectors, IndexSpec("IVF8,Flat"))
    write_index_file(trained, tmp_path / "trained.index")
    shard = tmp_path / "shard-00001.index"
    info = fill_shard(tmp_path / "trained.index", vectors[500:], 500, shard)
    assert info == read_shard_info(shard)
    assert isinstance(info, ShardInfo)
    assert (info.start, info.count, info.ntotal, info.dim, info.kind) == (500, 500, 500, 16, "ondisk")
    return tmp_path / "trained.index", shard, vectors


def test_a_shard_is_trusted_only_with_its_matching_record(one_shard):
    trained, shard, vectors = one_shard
    assert shard_is_complete(shard, 500, 500)
    assert shard_is_complete(shard, 500, 500, trained_path=trained)
    assert not shard_is_complete(shard, 0, 500)  # another range
    assert not shard_is_complete(shard, 500, 499)
    record = json.loads(record_path(shard).read_text())
    record_path(shard).write_text(json.dumps({**record, "count": 499}))  # a record that does not match
    assert not shard_is_complete(shard, 500, 500)
    record_path(shard).write_text("{")  # half a record
    assert not shard_is_complete(shard, 500, 500)
    fill_shard(trained, vectors[500:], 500, shard)
    with open(shard, "r+b") as handle:  # the index file cut short
        handle.truncate(shard.stat().st_size - 10)
    assert not shard_is_complete(shard, 500, 500)
    fill_shard(trained, vectors[500:], 500, shard)
    record_path(shard).unlink()  # an index file without its record: the task died before finishing
    assert not shard_is_complete(shard, 500, 500)
    assert not shard_is_complete(shard.with_name("never-written.index"), 500, 500)


def test_shards_of_another_training_are_never_merged(one_shard, unit_vectors):
    trained, shard, vectors = one_shard
    retrained, _ = train_index(vectors, IndexSpec("IVF8,Flat", seed=9))  # other centroids
    write_index_file(retrained, trained)
    assert shard_is_complete(shard, 500, 500)
    assert not shard_is_complete(shard, 500, 500, trained_path=trained)
    first = trained.with_name("shard-00000.index")
    fill_shard(trained, vectors[:500], 0, first)
    with pytest.raises(ValueError, match="shard-00001.index was filled from another trained index"):
        merge_shards(trained, [first, shard], trained.with_name("lists.ivfdata"))


def test_merge_refuses_missing_or_out_of_order_shards(tmp_path, data):
    vectors, _ = data
    trained, _ = train_index(vectors, IndexSpec("SQ8"))
    write_index_file(trained, tmp_path / "trained.index")
    paths = fill_all(tmp_path, vectors, tmp_path / "trained.index", shards=2)
    with pytest.raises(ValueError, match="starts at 2000, expected 0: shards must be contiguous"):
        merge_shards(tmp_path / "trained.index", paths[::-1])
    record_path(paths[1]).unlink()
    with pytest.raises(ValueError, match="shard-00001.index is not a complete shard"):
        merge_shards(tmp_path / "trained.index", paths)
    with pytest.raises(ValueError, match="no shards to merge"):
        merge_shards(tmp_path / "trained.index", [])


def test_fill_shard_checks_its_input(one_shard):
    trained, shard, vectors = one_shard
    with pytest.raises(ValueError, match=r"needs a non-empty \(n, 16\) array of vectors, got shape \(10, 8\)"):
        fill_shard(trained, vectors[:10, :8], 0, shard)
    with pytest.raises(ValueError, match="is not an empty trained index"):
        fill_shard(shard, vectors[:10], 0, shard.with_name("x.index"))


def test_the_merge_releases_the_shards_and_never_truncates_a_lists_file_in_place(tmp_path, data, assert_same_ranking):
    vectors, queries = data
    trained, _ = train_index(vectors, IndexSpec("IVF64,Flat"))
    write_index_file(trained, tmp_path / "trained.index")
    paths = fill_all(tmp_path, vectors, tmp_path / "trained.index")
    merged = merge_shards(tmp_path / "trained.index", paths, tmp_path / "lists.ivfdata")
    # faiss.contrib.ondisk.merge_ondisk leaves every shard mapped (and its disk space held) until the process ends
    mapped = {m.path for m in psutil.Process().memory_maps(grouped=True)}
    assert not mapped & {str(p.resolve()) for p in paths}
    assert str((tmp_path / "lists.ivfdata").resolve()) in mapped  # the merged index reads its lists through a map
    published = tmp_path / "published.ivfdata"
    os.link(tmp_path / "lists.ivfdata", published)  # as `save_index_dir` links it into an index directory
    before = published.read_bytes()
    again = merge_shards(tmp_path / "trained.index", paths, tmp_path / "lists.ivfdata")
    assert published.read_bytes() == before, "a published lists file was rewritten by the next merge"
    assert (tmp_path / "lists.ivfdata").stat().st_ino != published.stat().st_ino
    search_both(merged, again, queries, assert_same_ranking)
