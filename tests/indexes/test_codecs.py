"""Compact codecs: RaBitQ (1-8 bits, fast-scan), fast-scan PQ, SQ4/SQ6/SQfp16/SQbf16, IVF with an HNSW coarse
quantizer; their search parameters (RaBitQ's qb, the coarse quantizer's efSearch); and exact rescoring with
`,RFlat` recovering what the small codes lose, measured against exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes import faiss_index as fx
from indexes.exact import exact_search
from indexes.rescore import Rescorer
from indexes.vector_file import open_vectors, write_vectors
from search.data.datasets import load_beir
from search.evaluation.metrics import knn_recall
from search.pipeline import Pipeline, build_index_dir

DIM = 64


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4,000 unit vectors around 50 centres (as embeddings cluster by topic), 100 queries near them, exact top-10."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    base = centres[rng.integers(0, 50, 4000)] + 0.35 * rng.standard_normal((4000, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(4000, 100, replace=False)] + 0.1 * rng.standard_normal((100, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, truth = exact_search(queries, base, 10)
    return base, queries, truth


def recall_of(factory: str, data, **params: float) -> float:
    base, queries, truth = data
    built = fx.build_index(base, fx.IndexSpec(factory, search_params=params))
    _, positions = fx.search_index(built.index, queries, 10)
    return knn_recall([list(r) for r in positions], [list(r) for r in truth], 10)


@pytest.mark.parametrize(
    ("factory", "params", "at_least"),
    [
        ("SQfp16", {}, 0.99),
        ("SQbf16", {}, 0.97),
        ("SQ6", {}, 0.85),
        ("SQ4", {}, 0.6),
        ("HNSW32,SQ4", {}, 0.6),
        ("IVF16,SQ8", {"nprobe": 16}, 0.95),
        ("IVF16_HNSW32,Flat", {"nprobe": 16}, 0.99),  # every list probed: exact
        ("IVF16_HNSW32,SQ8", {"nprobe": 16, "quantizer_efSearch": 32}, 0.95),
        ("RaBitQ,RFlat", {"k_factor": 10}, 0.98),
        ("RaBitQfs,RFlat", {"k_factor": 10}, 0.98),
        ("IVF16,RaBitQ,RFlat", {"nprobe": 16, "k_factor": 10}, 0.98),
        ("PQ16x4fs,RFlat", {"k_factor": 10}, 0.98),
        ("IVF16,PQ16x4fsr,RFlat", {"nprobe": 16, "k_factor": 10}, 0.98),
    ],
)
def test_each_codec_builds_and_finds_the_exact_neighbours(clustered, factory, params, at_least):
    assert recall_of(factory, clustered, **params) >= at_least


def test_rescoring_recovers_what_one_bit_and_four_bit_codes_lose(clustered):
    for codes in ("RaBitQ", "PQ16x4fs"):
        alone = recall_of(codes, clustered)
        rescored = recall_of(f"{codes},RFlat", clustered, k_factor=10)
        assert alone < 0.6  # 1-bit / 4-bit codes alone miss most neighbours here
        assert rescored >= 0.98
    assert recall_of("RaBitQ4", clustered) > recall_of("RaBitQ", clustered)  # more bits, closer estimates


def test_rescoring_from_the_vector_file_recovers_what_the_codes_lose(clustered, tmp_path):
    base, queries, truth = clustered
    write_vectors(tmp_path / "v.npy", base, "fp16")
    for codes in ("RaBitQ", "RaBitQfs", "PQ16x4fs", "IVF16,RaBitQ"):
        index = fx.build_index(base, fx.IndexSpec(codes, search_params={"nprobe": 16} if "IVF" in codes else {})).index
        rescorer = Rescorer.from_vectors(index, open_vectors(tmp_path / "v.npy", len(base), DIM), 10)
        found = rescorer.search(queries, 10).positions
        assert knn_recall([list(r) for r in found], [list(r) for r in truth], 10) >= 0.98, codes


def test_fewer_bits_take_fewer_bytes(clustered):
    base = clustered[0]
    size = {
        f: fx.bytes_per_vector(fx.build_index(base, fx.IndexSpec(f)).index) for f in ("SQ4", "SQ6", "SQ8", "SQfp16")
    }
    assert size["SQ4"] == pytest.approx(DIM / 2, abs=1)
    assert size["SQ6"] == pytest.approx(DIM * 6 / 8, abs=1)
    assert size["SQ8"] == pytest.approx(DIM, abs=1)
    assert size["SQfp16"] == pytest.approx(DIM * 2, abs=1)
    one_bit = fx.bytes_per_vector(fx.build_index(base, fx.IndexSpec("RaBitQ")).index)
    fast_scan = fx.bytes_per_vector(fx.build_index(base, fx.IndexSpec("RaBitQfs")).index)
    assert fast_scan == pytest.approx(one_bit, abs=2)  # the same bits, laid out in blocks
    four_bit = fx.bytes_per_vector(fx.build_index(base, fx.IndexSpec("RaBitQ4")).index)
    assert one_bit < DIM / 8 + 16  # a bit per dimension and a few correction factors
    assert one_bit < four_bit < size["SQ8"]


def test_rabitq_query_bits_are_a_search_parameter(clustered):
    built = fx.build_index(clustered[0], fx.IndexSpec("RaBitQ,RFlat"))
    assert fx.default_search_params("RaBitQ,RFlat") == {"k_factor": 4, "qb": 8}
    assert fx.rabitq_index(built.index).qb == 8  # the default applied at build
    assert set(fx.settable_params(built.index)) == {"k_factor", "qb"}
    fx.apply_search_params(built.index, {"qb": 2})
    assert fx.rabitq_index(built.index).qb == 2
    flat = fx.build_index(clustered[0], fx.IndexSpec("SQ8")).index
    assert fx.rabitq_index(flat) is None
    with pytest.raises(ValueError, match="'qb' does not apply to this index; it accepts: none"):
        fx.apply_search_params(flat, {"qb": 4})
    assert fx.parse_search_params("qb=4,nprobe=8") == {"qb": 4.0, "nprobe": 8.0}
    for bad in ("qb=9", "qb=2.5"):
        with pytest.raises(ValueError, match=r"qb \(RaBitQ's query bits\) must be an integer 1..8"):
            fx.parse_search_params(bad)


def test_the_coarse_quantizers_efsearch_is_its_own_parameter():
    assert fx.default_search_params("IVF1024_HNSW32,PQ16x4fsr") == {"nprobe": 64, "quantizer_efSearch": 64}
    assert "efSearch" not in fx.default_search_params("IVF1024_HNSW32,Flat")  # that name is the HNSW index's own


@pytest.mark.parametrize("factory", ["PQ16x4fsr", "RaBitQ9", "SQ5", "HNSW32,RaBitQ", "IVF16_HNSW,Flat", "RaBitQ,PQ4"])
def test_forms_faiss_would_reject_or_we_do_not_serve_are_refused_with_the_list(factory):
    with pytest.raises(ValueError, match=r"unsupported index factory .*supported forms: Flat; .*RaBitQfs4"):
        fx.validate_factory(factory, DIM)


def test_a_rescored_one_bit_index_directory_serves_queries(tmp_path: Path, beir_dir: Path, assert_same_ranking):
    dataset = load_beir(beir_dir)
    encoder = FakeEncoder(dim=DIM)
    spec = fx.IndexSpec("RaBitQ,RFlat", search_params={"k_factor": 64})  # 60 documents: every one rescored
    build_index_dir(dataset, encoder, spec, tmp_path / "rabitq", show_progress=False)
    build_index_dir(dataset, encoder, fx.IndexSpec("Flat"), tmp_path / "flat", show_progress=False)
    compact, exact = Pipeline.load(tmp_path / "rabitq"), Pipeline.load(tmp_path / "flat")
    assert compact.meta["search_params"] == {"k_factor": 64, "qb": 8}
    for query in ("heart artery", "vitamin bone density"):
        got, want = compact.search(query, 5).hits, exact.search(query, 5).hits
        assert_same_ranking([h.id for h in got], [h.score for h in got], [h.id for h in want], [h.score for h in want])


ROUND_TRIP = ["RaBitQ", "RaBitQfs", "RaBitQ4", "PQ16x4fs", "SQ4", "SQ6", "SQfp16", "SQbf16", "IVF16,RaBitQ",
              "IVF16,RaBitQfs", "IVF16,PQ16x4fsr", "IVF16_HNSW32,SQ8", "HNSW32,SQ4"]  # fmt: skip


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("factory", ROUND_TRIP)
def test_each_codec_round_trips_through_an_index_directory_and_rescores_from_its_vector_file(
    clustered, tmp_path, factory, mmap
):
    """Saved with its fp16 vector file and loaded (read whole or memory-mapped): the same hits as the index in
    memory, and, rescored from the file at oversample 10, recall@10 vs exact search >= 0.97."""
    from indexes.docstore import DisplayDoc
    from indexes.store import load_index_dir, save_index_dir

    base, queries, truth = clustered
    params = {"nprobe": 16} if "IVF" in factory else {}
    index = fx.build_index(base, fx.IndexSpec(factory, search_params=params)).index
    ids = [f"d{i}" for i in range(len(base))]
    docs = [DisplayDoc(f"t{i}", f"s{i}") for i in range(len(base))]
    encoder = {"name": "fake", "type": "fake", "dim": DIM, "fingerprint": f"fake-{DIM}"}
    save_index_dir(tmp_path / "ix", index, ids, docs, {"factory": factory, "encoder": encoder}, vectors=base)
    stored = load_index_dir(tmp_path / "ix", mmap=mmap)
    fx.apply_search_params(stored.index, {**fx.default_search_params(factory), **params})
    fx.apply_search_params(index, {**fx.default_search_params(factory), **params})
    np.testing.assert_array_equal(stored.index.search(queries, 10)[1], index.search(queries, 10)[1])
    found = Rescorer.from_vectors(stored.index, stored.vectors, 10).search(queries, 10).positions
    assert knn_recall([list(r) for r in found], [list(r) for r in truth], 10) >= 0.97
    assert stored.docs.ids(found[:1]) == [[f"d{p}" for p in found[0]]]
