"""An index filled per shard and merged equals the same trained index filled in one go; shard records; on-disk lists
in an index directory (moved, memory-mapped) and the memory they hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexes.faiss_index import IndexSpec, apply_search_params, build_index, bytes_per_vector, train_index
from indexes.shards import (
    fill_shard,
    merge_kind,
    merge_shards,
    record_path,
    shard_is_complete,
    shard_ranges,
    write_index_file,
)
from indexes.store import DisplayDoc, IndexDirError, index_memory, load_index_dir, save_index_dir

GAP = 1e-5


def same_results(reference, candidate, queries, k=10) -> None:
    want_scores, want_ids = reference.search(queries, k)
    got_scores, got_ids = candidate.search(queries, k)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    gaps = np.abs(np.diff(want_scores, axis=1)) > GAP
    separated = np.ones_like(want_ids, dtype=bool)
    separated[:, 1:] &= gaps
    separated[:, :-1] &= gaps
    assert (got_ids[separated] == want_ids[separated]).all()


def sharded(tmp_path: Path, vectors: np.ndarray, spec: IndexSpec, shards: int = 4):
    trained, _ = train_index(vectors, spec)
    write_index_file(trained, tmp_path / "trained.index")
    paths = []
    for number, (start, stop) in enumerate(shard_ranges(len(vectors), shards)):
        path = tmp_path / f"shard-{number}.index"
        fill_shard(tmp_path / "trained.index", vectors[start:stop], start, path)
        paths.append(path)
    kind = merge_kind(trained)
    merged = merge_shards(tmp_path / "trained.index", paths, tmp_path / "lists.ivfdata" if kind == "ondisk" else None)
    apply_search_params(merged, spec.resolved_search_params())
    return kind, merged


@pytest.mark.parametrize(
    ("factory", "kind"),
    [("IVF32,PQ8", "ondisk"), ("OPQ8,IVF32,PQ8", "ondisk"), ("IVF32,Flat", "ondisk"), ("Flat", "in_memory"),
     ("SQ8", "in_memory"), ("PQ8", "in_memory")],
)  # fmt: skip
def test_shards_merged_equal_one_build(tmp_path, unit_vectors, factory, kind):
    data = unit_vectors(4050, 32, seed=2)
    vectors, queries = data[:4000], data[4000:]
    spec = IndexSpec(factory, seed=1, search_params={"nprobe": 8} if "IVF" in factory else {})
    got_kind, merged = sharded(tmp_path, vectors, spec)
    assert got_kind == kind and merged.ntotal == len(vectors)
    local = build_index(vectors, spec).index
    same_results(local, merged, queries)
    if kind == "ondisk":  # each vector: its code and an int64 id, as in memory
        assert bytes_per_vector(merged) == pytest.approx(bytes_per_vector(local), abs=1.0)


@pytest.mark.parametrize("factory", ["HNSW16", "IVF32,PQ8,RFlat"])
def test_graph_and_refine_indexes_are_built_in_one_process(tmp_path, unit_vectors, factory):
    trained, _ = train_index(unit_vectors(2000, 32), IndexSpec(factory))
    assert merge_kind(trained) == "driver"
    write_index_file(trained, tmp_path / "trained.index")
    with pytest.raises(ValueError, match="cannot be merged from shards"):
        merge_shards(tmp_path / "trained.index", [], None)


def test_shard_ranges_cover_everything_once():
    assert shard_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_ranges(5, 5) == [(i, i + 1) for i in range(5)]
    for bad in (0, 6):
        with pytest.raises(ValueError, match="shards must be 1..5"):
            shard_ranges(5, bad)


def test_a_shard_is_trusted_only_with_its_matching_record(tmp_path, unit_vectors):
    vectors = unit_vectors(1000, 16)
    trained, _ = train_index(vectors, IndexSpec("IVF8,Flat"))
    write_index_file(trained, tmp_path / "trained.index")
    shard = tmp_path / "shard-0.index"
    fill_shard(tmp_path / "trained.index", vectors[:500], 0, shard)
    assert shard_is_complete(shard, 0, 500)
    assert not shard_is_complete(shard, 500, 500)  # another range
    assert not shard_is_complete(shard, 0, 499)
    with open(shard, "ab") as handle:  # a damaged file no longer matches its record
        handle.write(b"x")
    assert not shard_is_complete(shard, 0, 500)
    fill_shard(tmp_path / "trained.index", vectors[:500], 0, shard)
    record_path(shard).unlink()
    assert not shard_is_complete(shard, 0, 500)  # a file without its record: unfinished


def test_on_disk_lists_in_an_index_dir_move_map_and_measure(tmp_path, unit_vectors):
    data = unit_vectors(20_050, 64, seed=4)
    vectors, queries = data[:20_000], data[20_000:]
    spec = IndexSpec("IVF64,Flat", seed=0, search_params={"nprobe": 2})
    (tmp_path / "work").mkdir()
    _, merged = sharded(tmp_path / "work", vectors, spec)
    ids = [f"d{i}" for i in range(len(vectors))]
    meta = {"encoder": {"name": "fake", "dim": 64}, "factory": spec.factory}
    save_index_dir(tmp_path / "ix", merged, ids, [DisplayDoc("", "")] * len(ids), meta,
                   extra_files={"lists.ivfdata": tmp_path / "work" / "lists.ivfdata"})  # fmt: skip
    del merged  # its own map of the lists (the merge wrote every page) would count too: a server holds only one
    stored_meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert stored_meta["on_disk_lists"] and set(stored_meta["index_files"]) == {"index.faiss", "lists.ivfdata"}
    (tmp_path / "ix").rename(tmp_path / "moved")
    local = build_index(vectors, spec).index
    stored = load_index_dir(tmp_path / "moved")
    apply_search_params(stored.index, {"nprobe": 2})
    same_results(local, stored.index, queries)
    memory = index_memory(stored)
    sizes = {name: (tmp_path / "moved" / name).stat().st_size for name in ("index.faiss", "lists.ivfdata")}
    assert memory["on_disk_bytes"] == sum(sizes.values())
    # 50 queries at nprobe 2 touch a fraction of the 64 lists: far from the whole 5 MB list file is resident
    assert memory["mapped_resident_bytes"] < sizes["lists.ivfdata"]
    assert memory["memory_mapped"] and memory["on_disk_lists"]
    (tmp_path / "moved" / "lists.ivfdata").unlink()
    with pytest.raises(IndexDirError, match="missing lists.ivfdata"):
        load_index_dir(tmp_path / "moved")


def test_a_regular_index_memory_mapped_searches_the_same(tmp_path, unit_vectors):
    data = unit_vectors(5050, 32, seed=5)
    built = build_index(data[:5000], IndexSpec("IVF32,Flat", search_params={"nprobe": 4})).index
    ids = [f"d{i}" for i in range(5000)]
    save_index_dir(tmp_path / "ix", built, ids, [DisplayDoc("", "")] * 5000, {"encoder": {"name": "fake"},
                   "factory": "IVF32,Flat"})  # fmt: skip
    for mmap in (False, True):
        stored = load_index_dir(tmp_path / "ix", mmap=mmap)
        apply_search_params(stored.index, {"nprobe": 4})
        same_results(built, stored.index, data[5000:])
        memory = index_memory(stored)
        assert memory["memory_mapped"] == mmap
        assert memory["on_disk_bytes"] == (tmp_path / "ix" / "index.faiss").stat().st_size
        if not mmap:
            assert memory["resident_bytes"] >= memory["on_disk_bytes"]  # read whole
