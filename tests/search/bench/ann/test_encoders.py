import numpy as np
import pytest

import semsearch_common.timing as timing
from compression.encoders import FakeEncoder
from search.bench.ann import encode_queries_timed, fp32_counterparts, parse_encoders, precision_of
from semsearch_common.timing import WARMUP_CALLS


def test_encode_queries_timed_encodes_each_query_alone_then_in_batches(monkeypatch):
    clock = iter(np.arange(0.0, 1000.0, 0.5))  # every perf_counter call advances 0.5 s: each timed call 0.5 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(clock)))
    encoder = FakeEncoder(dim=16)
    texts = [f"query number {i} about topic {i % 3}" for i in range(10)]
    encoded = encode_queries_timed(encoder, texts, batch=4)
    assert encoder.calls == [1] * (WARMUP_CALLS + len(texts)) + [4, 4, 2]  # warm-up, one at a time, batches of 4
    np.testing.assert_allclose(encoded.vectors, FakeEncoder(dim=16).encode(texts), atol=1e-6)
    assert encoded.vectors.dtype == np.float32
    assert encoded.vectors.shape == (10, 16)
    np.testing.assert_allclose(encoded.seconds, [0.5] * len(texts))
    assert encoded.batch_seconds == pytest.approx(0.5)


class Int8Identity(FakeEncoder):
    def identity(self):
        return {**super().identity(), "precision": "int8"}


def test_precision_of_reads_the_identity():
    assert precision_of(FakeEncoder(dim=8)) == "fp32"
    assert precision_of(Int8Identity(dim=8)) == "int8"


def test_fp32_counterparts_by_caret_or_label_pairing():
    entries = parse_encoders(["st=A", "st-int8=B", "other-int8=C", "x=D", "y-int8=E^x", "st_int8=F"])
    precisions = {"st": "fp32", "st-int8": "int8", "other-int8": "int8", "x": "fp32", "y-int8": "int8",
                  "st_int8": "int8"}  # fmt: skip
    assert fp32_counterparts(entries, precisions) == {
        "st": "st",
        "st-int8": "st",
        "other-int8": None,  # no entry labelled "other"
        "x": "x",
        "y-int8": "x",
        "st_int8": "st",
    }
