import math

import pytest

from search.bench.scale.spec import (
    ScaleBenchSpec,
    default_nlist,
    params_for,
    parse_skip,
    resolve_factory,
    validate_spec,
)


def test_default_nlist_is_the_power_of_two_nearest_4_sqrt_n_with_39_points_per_list():
    assert [default_nlist(n) for n in (10_000, 100_000, 1_000_000)] == [256, 1024, 4096]
    for n in (10, 500, 2000, 5000, 30_000):
        nlist = default_nlist(n)
        assert nlist & (nlist - 1) == 0  # a power of two
        assert nlist == 1 or n / nlist >= 39
        assert nlist <= 2 ** round(math.log2(4 * math.sqrt(n)))  # only ever lowered from the nearest power
    assert default_nlist(2000) == 32  # nearest is 256 (4 * sqrt(2000) ~ 179), lowered to keep >= 39 per list


def test_factory_templates_resolve_and_reject_bad_placeholders():
    assert resolve_factory("IVF{nlist},PQ{m},RFlat", 100_000, 384) == "IVF1024,PQ48,RFlat"
    assert resolve_factory("IVF{nlist},PQ{m}", 10_000, 384, pq_m=16) == "IVF256,PQ16"
    assert resolve_factory("HNSW32", 10, 32) == "HNSW32"
    with pytest.raises(ValueError, match="placeholders"):
        resolve_factory("IVF{bad},Flat", 1000, 32)
    with pytest.raises(ValueError, match="supported forms"):
        resolve_factory("LSH", 1000, 32)


def test_parsers_and_search_param_overrides():
    assert parse_skip(["IVF{nlist},PQ{m}@1000", "HNSW32 @ 20"]) == [("IVF{nlist},PQ{m}", 1000), ("HNSW32", 20)]
    assert params_for("IVF256,PQ4", {"nprobe": 32, "efSearch": 16}) == {"nprobe": 32, "oversample": 4}  # efSearch: HNSW
    assert params_for("HNSW32", {"nprobe": 32}) == {"efSearch": 64}


def test_validate_spec_accepts_a_skip_by_resolved_factory_and_rejects_too_few_training_vectors(tmp_path):
    spec = ScaleBenchSpec(
        vectors=tmp_path / "v.npy", sizes=(2000,), indexes=("IVF{nlist},Flat",), skip=("IVF32,Flat@2000",)
    )
    validate_spec(spec, 32)
    with pytest.raises(ValueError, match="training vectors"):
        validate_spec(ScaleBenchSpec(vectors=tmp_path / "v.npy", sizes=(2000,), indexes=("IVF256,Flat",),
                                     train_sample=100), 32)  # fmt: skip
