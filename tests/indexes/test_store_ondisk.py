"""Index directories whose IVF lists live on disk (merged from shards): saved atomically with their lists file, moved,
loaded with and without a memory map, searched identically; what FAISS maps; the memory an index holds."""

from __future__ import annotations

import ctypes
import json
import shutil
from pathlib import Path

import pytest

from indexes.faiss_index import IndexSpec, apply_search_params, build_index, openmp_threads, train_index
from indexes.shards import fill_shard, merge_shards, read_index_file, shard_ranges, write_index_file
from indexes.store import DisplayDoc, IndexDirError, index_memory, load_index_dir, save_index_dir

N, DIM, K = 20_000, 64, 10
NPROBE = {"nprobe": 2}
ENCODER = {"name": "fake", "type": "fake", "dim": DIM, "fingerprint": "fake-64"}
LISTS = "lists.ivfdata"


@pytest.fixture(autouse=True, scope="module")
def one_openmp_thread():
    """FAISS on one OpenMP thread here: these small trainings (OPQ above all) run several times faster without a team
    spinning on a busy machine, and every comparison is made under the same setting."""
    with openmp_threads(1):
        yield


def save(out_dir: Path, index, extra_files=None, factory="IVF64,Flat") -> dict:
    n = index.ntotal
    docs = [DisplayDoc(f"t{i}", "") for i in range(n)]
    meta = {"factory": factory, "encoder": {**ENCODER, "dim": index.d}}
    return save_index_dir(out_dir, index, [f"d{i}" for i in range(n)], docs, meta, extra_files=extra_files)


def same_search(reference, candidate, queries, assert_same_ranking, params=NPROBE) -> None:
    for index in (reference, candidate):
        apply_search_params(index, params)
    want_scores, want_ids = reference.search(queries, K)
    got_scores, got_ids = candidate.search(queries, K)
    for row in range(len(queries)):
        assert_same_ranking(got_ids[row], got_scores[row], want_ids[row], want_scores[row])


@pytest.fixture(scope="module")
def sharded(unit_vectors, tmp_path_factory):
    """20k x 64 vectors as IVF64,Flat: merged on disk from 4 shards in `work/`, and the same trained index filled in
    one go (the reference)."""
    data = unit_vectors(N + 50, DIM, seed=4)
    vectors, queries = data[:N], data[N:]
    work = tmp_path_factory.mktemp("work")
    trained, _ = train_index(vectors, IndexSpec("IVF64,Flat", train_sample=5000, seed=0))
    write_index_file(trained, work / "trained.index")
    paths = []
    for number, (start, stop) in enumerate(shard_ranges(N, 4)):
        paths.append(work / f"shard-{number}.index")
        fill_shard(work / "trained.index", vectors[start:stop], start, paths[-1])
    reference = read_index_file(work / "trained.index")
    reference.add(vectors)
    return work, paths, queries, reference


@pytest.fixture
def ondisk_dir(sharded, tmp_path) -> Path:
    """An index directory holding the merged index and its lists file, saved from a merge in `work/`."""
    work, paths, _, _ = sharded
    merged = merge_shards(work / "trained.index", paths, work / LISTS)
    save(tmp_path / "ix", merged, {LISTS: work / LISTS})
    return tmp_path / "ix"


def test_an_on_disk_index_dir_moves_and_searches_the_same_with_and_without_a_map(
    ondisk_dir, sharded, tmp_path, assert_same_ranking, capfd
):
    _, _, queries, reference = sharded
    meta = json.loads((ondisk_dir / "meta.json").read_text())
    sizes = {name: (ondisk_dir / name).stat().st_size for name in ("index.faiss", LISTS)}
    assert meta["on_disk_lists"] is True
    assert meta["index_files"] == sizes
    assert sizes[LISTS] >= N * (DIM * 4 + 8)  # every vector and id went to the lists file, none to index.faiss
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder is left"
    moved = tmp_path / "elsewhere" / "ix2"
    moved.parent.mkdir()
    ondisk_dir.rename(moved)
    capfd.readouterr()
    for mmap in (False, True):
        stored = load_index_dir(moved, mmap=mmap)
        assert stored.mmap == mmap
        assert stored.index.ntotal == N
        same_search(reference, stored.index, queries, assert_same_ranking)
    ctypes.CDLL(None).fflush(None)  # C stdio's buffer: FAISS's IO_FLAG_ONDISK_SAME_DIR would print a line here
    assert capfd.readouterr().out == "", "loading must not print to stdout (it would corrupt --json output)"


def test_saving_links_the_lists_and_a_failed_save_loses_nothing(sharded, tmp_path, monkeypatch):
    work, paths, _, _ = sharded
    merged = merge_shards(work / "trained.index", paths, tmp_path / LISTS)
    import indexes.store as store

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_json_atomic", explode)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "ix", merged, {LISTS: tmp_path / LISTS})
    monkeypatch.undo()
    assert (tmp_path / LISTS).is_file()
    assert not (tmp_path / "ix").exists()
    save(tmp_path / "ix", merged, {LISTS: tmp_path / LISTS})
    assert (tmp_path / "ix" / LISTS).stat().st_ino == (tmp_path / LISTS).stat().st_ino  # linked, not copied
    (tmp_path / LISTS).unlink()  # the work folder goes: the directory keeps its own link
    assert load_index_dir(tmp_path / "ix").index.ntotal == N


def test_an_on_disk_index_must_be_saved_with_its_lists(sharded, tmp_path):
    work, paths, _, _ = sharded
    merged = merge_shards(work / "trained.index", paths, tmp_path / LISTS)
    with pytest.raises(ValueError, match=r"keeps its inverted lists in .*lists.ivfdata: pass extra_files=\{'lists"):
        save(tmp_path / "ix", merged)
    with pytest.raises(ValueError, match="given: other.ivfdata"):
        save(tmp_path / "ix", merged, {"other.ivfdata": tmp_path / LISTS})
    for bad in ("index.faiss", "../lists.ivfdata", ".hidden", ""):
        with pytest.raises(ValueError, match="use a plain file name other than index.faiss"):
            save(tmp_path / "ix", merged, {bad: tmp_path / LISTS})
    with pytest.raises(ValueError, match="is not a file"):
        save(tmp_path / "ix", merged, {LISTS: tmp_path / "nothing.ivfdata"})
    assert not (tmp_path / "ix").exists()


def test_damaged_or_missing_lists_are_refused_with_the_fix(ondisk_dir):
    lists = ondisk_dir / LISTS
    with open(lists, "r+b") as handle:  # a short file would crash a search (SIGBUS) if it were mapped
        handle.truncate(lists.stat().st_size - 4096)
    with pytest.raises(IndexDirError, match=r"lists.ivfdata: \d+ bytes, meta.json says \d+; the file is damaged"):
        load_index_dir(ondisk_dir)
    lists.unlink()
    for mmap in (False, True):
        with pytest.raises(IndexDirError, match="missing lists.ivfdata .*rebuild it with `semsearch index`"):
            load_index_dir(ondisk_dir, mmap=mmap)


def test_index_memory_of_an_on_disk_index_counts_only_the_pages_searched(ondisk_dir, sharded):
    _, _, queries, _ = sharded
    stored = load_index_dir(ondisk_dir, mmap=True)
    apply_search_params(stored.index, {"nprobe": 1})
    stored.index.search(queries[:5], K)  # at most 5 of the 64 lists (~80 kB each) are read
    memory = index_memory(stored)
    files = {name: (ondisk_dir / name).stat().st_size for name in ("index.faiss", LISTS)}
    assert memory["on_disk_bytes"] == sum(files.values())
    assert memory["memory_mapped"]
    assert memory["on_disk_lists"]
    assert 0 < memory["resident_bytes"] == memory["mapped_resident_bytes"]
    assert memory["resident_bytes"] < memory["on_disk_bytes"] / 2, memory
    whole = index_memory(load_index_dir(ondisk_dir, mmap=False))  # index.faiss read whole, the lists still mapped
    assert whole["resident_bytes"] >= files["index.faiss"]
    assert whole["memory_mapped"]
    assert whole["on_disk_lists"]


# factory -> (vectors, dim): 20k x 64 where index.faiss is large enough (MBs) to show that mapping it reads (almost)
# nothing; OPQ in 16 dimensions, where it trains in a second
FACTORIES = {"Flat": (N, DIM), "SQ8": (N, DIM), "IVF64,Flat": (N, DIM), "PQ8": (3000, DIM), "IVF64,PQ8": (3000, DIM),
             "OPQ4,IVF64,PQ4": (3000, 16), "IVF64,PQ8,RFlat": (3000, DIM), "HNSW16": (3000, DIM)}  # fmt: skip


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_what_faiss_memory_maps(unit_vectors, tmp_path, assert_same_ranking, factory):
    """Under mmap (IO_FLAG_MMAP_IFC) index.faiss is mapped, not read: for the large files (flat codes, IVF lists) only
    a sliver of it is resident after loading, and a few IVF queries read a few lists; every type searches the same.
    Read whole, the file's size is what `index_memory` counts."""
    n, dim = FACTORIES[factory]
    data = unit_vectors(n + 20, dim, seed=6)
    spec = IndexSpec(factory, train_sample=600 if "PQ" in factory else 5000, seed=0)
    built = build_index(data[:n], spec).index
    save(tmp_path / "ix", built, factory=factory)
    size = (tmp_path / "ix" / "index.faiss").stat().st_size
    mapped = load_index_dir(tmp_path / "ix", mmap=True)
    loaded = index_memory(mapped)
    assert loaded["on_disk_bytes"] == size
    assert loaded["memory_mapped"]
    assert not loaded["on_disk_lists"]
    assert loaded["resident_bytes"] == loaded["mapped_resident_bytes"] <= size + 4096
    if n == N:
        assert loaded["resident_bytes"] < size / 4, loaded
    if factory == "IVF64,Flat":
        apply_search_params(mapped.index, {"nprobe": 1})
        mapped.index.search(data[n : n + 3], K)  # 3 of the 64 lists, ~80 kB each
        assert 0 < index_memory(mapped)["resident_bytes"] < size / 2
    params = {"nprobe": 1} if "IVF" in factory else {}
    same_search(built, mapped.index, data[n:], assert_same_ranking, {**params, **spec.resolved_search_params()})
    assert 0 < index_memory(mapped)["mapped_resident_bytes"] <= size + 4096
    del mapped  # its map of index.faiss would be counted for the next load too (pages are counted per file)
    whole = index_memory(load_index_dir(tmp_path / "ix"))
    assert whole["resident_bytes"] == size
    assert whole["mapped_resident_bytes"] == 0
    assert not whole["memory_mapped"]


def test_a_directory_from_before_index_files_still_loads(unit_vectors, tmp_path):
    vectors = unit_vectors(200, DIM)
    save(tmp_path / "ix", build_index(vectors, IndexSpec("Flat")).index, factory="Flat")
    meta_path = tmp_path / "ix" / "meta.json"
    meta = json.loads(meta_path.read_text())
    for key in ("index_files", "on_disk_lists"):
        meta.pop(key)
    meta_path.write_text(json.dumps(meta))
    stored = load_index_dir(tmp_path / "ix", mmap=True)
    assert stored.index.ntotal == 200
    assert index_memory(stored)["on_disk_bytes"] == (tmp_path / "ix" / "index.faiss").stat().st_size


def test_a_copied_on_disk_dir_is_independent_of_its_source(ondisk_dir, sharded, tmp_path, assert_same_ranking):
    _, _, queries, reference = sharded
    shutil.copytree(ondisk_dir, tmp_path / "copy")
    shutil.rmtree(ondisk_dir)
    same_search(reference, load_index_dir(tmp_path / "copy").index, queries, assert_same_ranking)
    kept = sorted(p.name for p in (tmp_path / "copy").iterdir() if not p.name.endswith(("-wal", "-shm")))  # WAL's own
    assert kept == ["docs.sqlite", "index.faiss", LISTS, "meta.json"]
