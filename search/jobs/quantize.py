"""`semsearch quantize`: export a sentence-transformers model to ONNX (fp32), quantize it to int8, and measure both.

The report gives the model sizes, the batch-1 query-encoding latency of each, and the int8 quality gate
(`search.evaluation.quantize_gate`), measured on TRAIN queries only: the test split is never looked at here.
Static calibration uses seeded corpus passages, never queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders.onnx import ONNX_MODEL_FILE, OnnxEncoder
from compression.models import model_bytes, resolve_model
from compression.onnx_export import export_onnx
from compression.quantize import QUANTIZATION_MODES, quantize_onnx
from search.data.datasets import Dataset, load_dataset
from search.evaluation.evaluate import encode_latency_ms
from search.evaluation.quantize_gate import quality_gate

GATE_SPLIT = "train"
FP32_DIR, INT8_DIR = "fp32", "int8"


@dataclass(frozen=True)
class QuantizeSpec:
    """What to quantize and how to judge it.

    model: a sentence-transformers folder (a distilled student), `minilm` or `teacher`.
    out: the output folder; it receives `fp32/` and `int8/` ONNX model folders.
    mode: `dynamic` or `static` (QDQ, calibrated on `calibration_texts` seeded corpus passages).
    dataset: the calibration corpus and the TRAIN queries of the quality gate.
    tolerance: the largest allowed nDCG@10 drop of int8 against fp32; gate_docs: distractors in the gate's corpus.
    latency_queries: the first N train queries, encoded one at a time, for the latency figures.
    threads: onnxruntime intra-op threads (None: its default).
    """

    model: str
    out: Path
    mode: str = "dynamic"
    dataset: str = "scifact"
    tolerance: float = 0.005
    gate_docs: int = 2000
    calibration_texts: int = 256
    latency_queries: int = 100
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in QUANTIZATION_MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use one of {', '.join(QUANTIZATION_MODES)}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        for name in ("calibration_texts", "latency_queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def calibration_sample(dataset: Dataset, n: int, seed: int) -> list[str]:
    """`n` seeded corpus passages (title + text), in corpus order: static calibration data, never queries."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(dataset.corpus), size=min(n, len(dataset.corpus)), replace=False)
    return [dataset.corpus[i].full_text() for i in sorted(picked)]


def run_quantize_job(spec: QuantizeSpec) -> dict[str, Any]:
    """Export, quantize, then report sizes, batch-1 latency and the train-split gate (keys prefixed `gate_`)."""
    data = load_dataset(spec.dataset)
    _, train_texts, _ = data.split_queries(GATE_SPLIT)  # fail on a dataset without train qrels before exporting
    source = resolve_model(spec.model)
    fp32_dir = export_onnx(source.path, spec.out / FP32_DIR)
    calibration = calibration_sample(data, spec.calibration_texts, spec.seed) if spec.mode == "static" else None
    int8_dir = quantize_onnx(fp32_dir, spec.out / INT8_DIR, mode=spec.mode, calibration_texts=calibration)  # type: ignore[arg-type]
    fp32, int8 = OnnxEncoder(fp32_dir, threads=spec.threads), OnnxEncoder(int8_dir, threads=spec.threads)
    gate = quality_gate(fp32, int8, data, split=GATE_SPLIT, tolerance=spec.tolerance, distractors=spec.gate_docs)
    latency_texts = train_texts[: spec.latency_queries]
    fp32_latency, int8_latency = encode_latency_ms(fp32, latency_texts), encode_latency_ms(int8, latency_texts)
    return {
        "out": str(spec.out),
        "mode": spec.mode,
        "fp32_model_bytes": (fp32_dir / ONNX_MODEL_FILE).stat().st_size,
        "int8_model_bytes": (int8_dir / ONNX_MODEL_FILE).stat().st_size,
        "int8_folder_bytes": model_bytes(int8_dir),
        "fp32_encode_ms_p50": fp32_latency["encode_ms_p50"],
        "int8_encode_ms_p50": int8_latency["encode_ms_p50"],
        "latency_queries": f"first {spec.latency_queries} {GATE_SPLIT} queries, batch 1",
        **{f"gate_{key}": value for key, value in gate.to_dict().items()},
    }


def prune_for_dataset(onnx_dir: Path, dataset: Dataset, out: Path, max_tokens: int | None = None) -> dict[str, Any]:
    """Prune an exported ONNX folder's token-embedding table to the tokens `dataset`'s corpus and TRAIN queries
    produce (never test queries), the `max_tokens` most frequent when given; unseen tokens then read as [UNK].

    The tokenizer is unchanged, so the folder loads as any other; see `compression.vocab`.
    """
    from compression.vocab import prune_vocabulary, token_counts

    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    texts = [doc.full_text() for doc in dataset.corpus]
    texts += [dataset.queries[qid] for qid in dataset.qrels.get(GATE_SPLIT, {}) if qid in dataset.queries]
    counts = token_counts(Path(onnx_dir), texts)
    kept = [token for token, _ in counts.most_common(max_tokens)]
    covered = sum(counts[token] for token in kept) / max(1, sum(counts.values()))
    report = prune_vocabulary(Path(onnx_dir), kept, Path(out))
    return {"out": str(out), "kept_tokens": len(kept), "token_occurrences_covered": covered,
            "model_bytes_before": report.bytes_before, "model_bytes_after": report.bytes_after}  # fmt: skip
