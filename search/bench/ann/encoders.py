"""The encoders under test: their queries encoded one at a time (timed, at batch 1) and in batches (for QPS),
their precision, and which fp32 encoder each int8 one is compared with in the loss split."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from compression.encoders import Encoder
from search.bench.ann.spec import BATCH, EncoderEntry
from semsearch_common.timing import time_each, time_pass


@dataclass(frozen=True)
class EncodedQueries:
    """An encoder's query vectors (encoded one at a time), each query's encode time (s), and the batch time (s)."""

    vectors: np.ndarray
    seconds: np.ndarray
    batch_seconds: float


def encode_queries_timed(encoder: Encoder, texts: list[str], batch: int = BATCH) -> EncodedQueries:
    """Encode each query alone, after the warm-up of `semsearch_common.timing` (timed; these vectors are the ones
    searched),
    then all of them once in batches of `batch`."""
    timed = time_each(lambda text: encoder.encode([text], kind="query", batch_size=1)[0], texts)

    def encode_in_batches() -> None:
        for start in range(0, len(texts), batch):
            encoder.encode(texts[start : start + batch], kind="query", batch_size=batch)

    batch_seconds = time_pass(encode_in_batches)
    return EncodedQueries(np.stack(timed.results).astype(np.float32), timed.seconds, batch_seconds)


def precision_of(encoder: Encoder) -> str:
    """int8 for a quantized ONNX model (its onnx_config.json precision), else fp32."""
    return "int8" if encoder.identity().get("precision") == "int8" else "fp32"


def fp32_counterparts(entries: Sequence[EncoderEntry], precisions: Mapping[str, str]) -> dict[str, str | None]:
    """label -> label of its fp32 counterpart: the entry's `^label`, else `X` for an int8 entry labelled `X-int8`;
    fp32 entries are their own counterpart."""
    labels = {entry.label for entry in entries}
    out: dict[str, str | None] = {}
    for entry in entries:
        if entry.fp32_of:
            out[entry.label] = entry.fp32_of
        elif precisions[entry.label] == "fp32":
            out[entry.label] = entry.label
        else:
            base = re.sub(r"[-_]int8$", "", entry.label)
            out[entry.label] = base if base != entry.label and base in labels else None
    return out
