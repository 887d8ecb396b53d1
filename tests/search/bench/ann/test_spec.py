import re

import pytest

from search.bench.ann import (
    EncoderEntry,
    doc_encoder_name,
    format_params,
    make_bench_spec,
    parse_encoders,
    parse_indexes,
    parse_sweep,
    sweep_grid,
)


def test_sweep_grid_only_sweeps_applicable_params_and_keeps_the_default():
    sweep = {"nprobe": (1, 2, 64, 512), "efSearch": (16, 32), "k_factor": (1, 8)}
    assert sweep_grid("Flat", sweep) == [({}, True)]
    assert sweep_grid("PQ8", sweep) == [({"oversample": 4}, True)]  # lossy codes: rescored from the vector file
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
    entries = parse_encoders(["teacher", " st=DIR", "s-int8=ONNX@teacher^st", "asym=ONNX@", "fake:16"],
                             default_doc_spec="DOCS")  # fmt: skip
    assert entries == (
        EncoderEntry("teacher", "teacher"),
        EncoderEntry("st", "DIR"),
        EncoderEntry("s-int8", "ONNX", "teacher", "st"),
        EncoderEntry("asym", "ONNX", "DOCS"),
        EncoderEntry("fake:16", "fake:16"),
    )
    assert parse_encoders(["x=fake:8@fake:8"])[0].doc_spec is None  # documents by the same model: symmetric
    assert parse_encoders(["s=runs/a,b"])[0].spec == "runs/a,b"  # one entry per --encoder: commas are the spec's
    assert [doc_encoder_name(e, entries) for e in entries] == ["teacher", "st", "teacher", "DOCS", "fake:16"]
    bad_entries = [([], "no encoders"), ([""], "has no spec"), (["a="], "has no spec"), (["a=x@y@z"], "two @docspec"),
                   (["a=x^"], "one ^fp32label"), (["a b=x"], "label 'a b'")]  # fmt: skip
    for bad, message in bad_entries:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_encoders(bad)


def test_parse_sweep_and_its_errors():
    assert parse_sweep(["nprobe=1,2, 4", "efSearch=16", " k_factor=1.5"]) == (
        ("nprobe", (1, 2, 4)),
        ("efSearch", (16,)),
        ("k_factor", (1.5,)),
    )
    assert parse_sweep(["nprobe=4,4.0,2"]) == (("nprobe", (4, 2)),)  # 4.0 is 4: listed once, as an int
    assert isinstance(parse_sweep(["nprobe=4.0"])[0][1][0], int)
    assert parse_sweep([]) == ()
    for bad, message in [("nprobe", "bad sweep item 'nprobe'"), ("foo=1", "unknown search parameter 'foo'"),
                         ("nprobe=a", "not a number"), ("nprobe=0", "must be >= 1"), ("nprobe=", "lists no values"),
                         ("nprobe=1;efSearch=2", "not a number")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_sweep([bad])
    with pytest.raises(ValueError, match="appears in two --sweep items"):
        parse_sweep(["nprobe=1", "nprobe=2"])


def test_parse_indexes_keeps_one_factory_per_entry_and_drops_repeats():
    assert parse_indexes(["Flat", " IVF256,PQ48 ", "Flat", "", "HNSW32"]) == ("Flat", "IVF256,PQ48", "HNSW32")
    with pytest.raises(ValueError, match="no index factories"):
        parse_indexes([" "])


def test_format_params():
    assert format_params({"nprobe": 4, "k_factor": 1.5}) == "nprobe=4,k_factor=1.5"
    assert format_params({}) == "-"


def test_spec_rejects_duplicates_unknown_counterparts_and_bad_numbers():
    with pytest.raises(ValueError, match="duplicate encoder labels"):
        make_bench_spec(["a=fake:8", "a=fake:16"])
    with pytest.raises(ValueError, match="fp32 counterpart 'zz'"):
        make_bench_spec(["a=fake:8^zz"])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        make_bench_spec(["fake:8"], repeats=0)
    with pytest.raises(ValueError, match="budget_ms must be > 0"):
        make_bench_spec(["fake:8"], budget_ms=-1.0)


def test_make_bench_spec_doc_encoder_default_and_teacher_label():
    spec = make_bench_spec(["t=teacher", "s=S@"], doc_encoder="D")
    assert spec.encoders[1].doc_spec == "D"
    assert spec.teacher_label() == "t"
    assert make_bench_spec(["s=S@"]).encoders[0].doc_spec == "teacher"  # a bare @ defaults to the teacher
    assert make_bench_spec(["s=S@"]).teacher_label() is None
