import numpy as np
import pytest

from indexes.exact import exact_search
from indexes.faiss_index import (
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    default_search_params,
    parse_search_params,
    search_index,
    settable_params,
    validate_factory,
)
from indexes.ids import DocIdMap
from search.evaluation.metrics import knn_recall

DIM = 64


@pytest.fixture(scope="module")
def data(unit_vectors):
    both = unit_vectors(4100, DIM, seed=1)  # queries from the same distribution as the base
    base, queries = both[:4000], both[4000:]
    _, truth = exact_search(queries, base, 10)
    return base, queries, truth


def recall(positions: np.ndarray, truth: np.ndarray) -> float:
    return knn_recall([list(r) for r in positions], [list(r) for r in truth], 10)


def test_exact_search_matches_brute_force_in_blocks(unit_vectors, assert_same_top_k):
    base, queries = unit_vectors(1000, 16, seed=3), unit_vectors(50, 16, seed=4)
    scores, ids = exact_search(queries, base, 7, query_block=8, doc_block=97)
    full = queries.astype(np.float64) @ base.T.astype(np.float64)  # an independent, more precise computation
    assert_same_top_k(ids, scores, full)
    assert (np.diff(scores, axis=1) <= 1e-7).all()  # best first


def test_exact_search_k_larger_than_corpus_and_bad_k(unit_vectors):
    base = unit_vectors(5, 8)
    _, ids = exact_search(base[:2], base, 50)
    assert ids.shape == (2, 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        exact_search(base, base, 0)


def test_flat_equals_exact_search(data, assert_same_top_k):
    base, queries, truth = data
    built = build_index(base, IndexSpec("Flat"))
    scores, positions = search_index(built.index, queries, 10)
    assert_same_top_k(positions, scores, queries.astype(np.float64) @ base.T.astype(np.float64))
    assert recall(positions, truth) > 0.99  # FAISS and the blockwise numpy search agree but for near-ties


def test_ivf_recall_rises_with_nprobe(data):
    base, queries, truth = data
    index = build_index(base, IndexSpec("IVF64,Flat")).index
    recalls = []
    for nprobe in (1, 2, 4, 8, 16, 64):
        apply_search_params(index, {"nprobe": nprobe})
        recalls.append(recall(search_index(index, queries, 10)[1], truth))
    assert all(a <= b + 1e-9 for a, b in zip(recalls, recalls[1:], strict=False)), recalls
    assert recalls[0] < 0.9 < recalls[-1]
    assert recalls[-1] == pytest.approx(1.0)  # probing every list is exhaustive


@pytest.mark.parametrize(
    "factory,min_recall",
    [
        ("HNSW32", 0.9),
        ("HNSW32,SQ8", 0.9),
        ("IVF32,Flat", 0.6),
        ("PQ16", 0.15),
        ("IVF32,PQ16", 0.15),
        ("OPQ16,IVF32,PQ16", 0.15),
        ("SQ8", 0.9),
        ("IVF32,PQ16,RFlat", 0.6),
        ("PQ8,RFlat", 0.3),
        ("HNSW32,RFlat", 0.9),
    ],
)
def test_supported_factories_build_and_find_neighbours(data, factory, min_recall):
    base, queries, truth = data
    index = build_index(base, IndexSpec(factory)).index
    assert index.ntotal == len(base)
    assert recall(search_index(index, queries, 10)[1], truth) >= min_recall


def test_refinement_k_factor_raises_recall(data):
    base, queries, truth = data
    index = build_index(base, IndexSpec("PQ8,RFlat")).index
    apply_search_params(index, {"k_factor": 1})
    low = recall(search_index(index, queries, 10)[1], truth)
    apply_search_params(index, {"k_factor": 16})
    high = recall(search_index(index, queries, 10)[1], truth)
    assert high > low + 0.1


def test_training_is_seeded(data):
    base, queries, _ = data
    a = build_index(base, IndexSpec("IVF32,PQ8", train_sample=1000, seed=3)).index
    b = build_index(base, IndexSpec("IVF32,PQ8", train_sample=1000, seed=3)).index
    np.testing.assert_array_equal(search_index(a, queries, 10)[1], search_index(b, queries, 10)[1])


def test_bytes_per_vector_measured_from_serialised_index(data):
    base = data[0]
    assert bytes_per_vector(build_index(base, IndexSpec("Flat")).index) == pytest.approx(DIM * 4)
    # 16 bytes of PQ codes + 8 bytes of id in the inverted lists
    assert bytes_per_vector(build_index(base, IndexSpec("IVF32,PQ16")).index) == pytest.approx(24, abs=0.5)
    assert bytes_per_vector(build_index(base, IndexSpec("SQ8")).index) == pytest.approx(DIM)


@pytest.mark.parametrize(
    "factory,message",
    [("IVF,Flat", "unsupported"), ("LSH", "unsupported"), ("PQ7", "must divide"), ("Flat,RFlat", "unsupported")],
)
def test_bad_factories_are_rejected_with_allowed_forms(factory, message):
    with pytest.raises(ValueError, match=message) as err:
        validate_factory(factory, DIM)
    if message == "unsupported":
        assert "IVF{nlist},PQ{m}" in str(err.value)


def test_search_params_parsing_and_applicability(data):
    assert parse_search_params("nprobe=8, efSearch=32,k_factor=2") == {"nprobe": 8, "efSearch": 32, "k_factor": 2}
    for bad, message in (
        ("nprob=3", "nprobe, efSearch, quantizer_efSearch, k_factor, qb"),
        ("nprobe=x", "number"),
        ("nprobe=0", ">= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_search_params(bad)
    flat = build_index(data[0][:500], IndexSpec("Flat")).index
    assert settable_params(flat) == []
    with pytest.raises(ValueError, match="does not apply"):
        apply_search_params(flat, {"nprobe": 4})
    assert default_search_params("OPQ16,IVF256,PQ16,RFlat") == {"nprobe": 16, "k_factor": 4}


def test_search_rejects_wrong_dimension(data):
    index = build_index(data[0][:100], IndexSpec("Flat")).index
    with pytest.raises(ValueError, match="shape"):
        search_index(index, np.zeros((1, DIM + 1), dtype=np.float32), 5)


def test_doc_id_map_round_trip():
    ids = DocIdMap(["a", "b", "c"])
    assert ids.to_ids(np.array([[2, 0, -1]])) == [["c", "a"]]
    np.testing.assert_array_equal(ids.to_positions(["b", "c"]), [1, 2])
    with pytest.raises(KeyError, match="zz"):
        ids.to_positions(["zz"])
    with pytest.raises(ValueError, match="duplicate document id 'a'"):
        DocIdMap(["a", "b", "a"])
