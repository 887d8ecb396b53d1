"""int8 quantization of an exported ONNX model folder with onnxruntime.quantization: a step applied to a model.

Both modes store per-channel symmetric int8 weights for MatMul (constant weight only, never the attention's
activation-by-activation products) and Gather (the embedding tables), and for the fused Attention and
EmbedLayerNormalization nodes of a fused graph (without them a fused MiniLM kept fp32 attention weights and
embeddings: 66 MB instead of 23 MB):

- `dynamic` (`quantize_dynamic`): activations are quantized on the fly, with a range per batch. Needs no data.
- `static` (`quantize_static`, QDQ format, MinMax calibration): activation ranges are fixed from calibration texts
  the caller passes (corpus text, never test queries); activations are uint8 (asymmetric), which onnxruntime fuses
  into integer kernels on x86 (int8 activations ran unfused and slower than fp32). The feed-forward output MatMuls,
  fed by GELU, stay fp32: their inputs carry outliers that one calibrated range cannot cover (on MiniLM, quantizing
  them drops the cosine to fp32 from 0.989 to 0.92; percentile calibration or sentence-length calibration texts did
  not help).

Measured on all-MiniLM-L6-v2 (onnxruntime 1.32, 1 thread): dynamic is smaller (23 MB vs 34 MB), faster and closer
to fp32 (mean cosine 0.993 vs 0.989), so it is the default.

Fusion (`fuse`): dynamic mode first applies onnxruntime's transformer fusions (`onnx_export.fuse_graph`) to the fp32
graph, which made int8 MiniLM 17% faster at batch 1 (3.05 -> 2.53 ms, 2 threads) and changed nothing for MPNet
slices, whose attention does not fuse. Static mode refuses fused graphs: QDQ keeps the fused Attention in fp32 behind
dequantized weights, 2x slower (MiniLM 6.97 vs 3.63 ms). See `onnx_export`'s docstring for the measurements.

Pre-processing (`quant_pre_process`) is off by default. With its defaults it fails on the traced graph ("Incomplete
symbolic shape inference"); with `auto_merge=True` it works, but changed neither the cosine nor the latency of
either mode on MiniLM (ONNX Runtime applies the same graph optimisations when the session loads) and adds seconds.
Without it onnxruntime logs a "consider pre-processing" warning, which is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders.onnx import (
    ONNX_CONFIG_FILE,
    ONNX_MODEL_FILE,
    QUANTIZATION_MODES,
    OnnxModelConfig,
    QuantizationMode,
    TextTokenizer,
)
from compression.onnx_export import check_output_dir, copy_tokenizer_files, fuse_graph, fused_operators
from semsearch_common.atomic import atomic_path, staged_folder, write_json_atomic
from semsearch_common.errors import MissingDependencyError

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
# The quantizer's type inference does not know the outputs of onnxruntime's fused (com.microsoft) operators: they are
# float, as everything the exporter writes.
QUANTIZER_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": 1}  # 1: onnx.TensorProto.FLOAT
CALIBRATION_BATCH_SIZE = 16
ACTIVATION_OPS = ("Erf", "Tanh", "Gelu", "FastGelu", "BiasGelu", "Sigmoid")
ELEMENTWISE_OPS = ("Mul", "Add", "Div", "Sub", "Pow", "Cast")


def activation_fed_matmuls(model_path: Path, max_depth: int = 6) -> list[str]:
    """Names of the MatMul nodes whose input comes out of a GELU-like activation (the feed-forward output layers).

    The activation is found by walking up at most `max_depth` element-wise producers (GELU traces to
    Div -> Erf -> Add -> Mul -> Mul). These inputs carry the large outliers of transformer activations, which one
    calibrated int8 range cannot cover.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}

    def fed_by_activation(tensor: str, depth: int) -> bool:
        node = producer.get(tensor)
        if node is None or depth > max_depth:
            return False
        if node.op_type in ACTIVATION_OPS:
            return True
        if node.op_type not in ELEMENTWISE_OPS:
            return False
        return any(fed_by_activation(name, depth + 1) for name in node.input)

    return [node.name for node in graph.node if node.op_type == "MatMul" and fed_by_activation(node.input[0], 1)]


def batched_features(
    tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int = CALIBRATION_BATCH_SIZE
) -> Iterator[dict[str, np.ndarray]]:
    """Tokenised calibration batches, in the order given."""
    for start in range(0, len(texts), batch_size):
        yield tokenizer(texts[start : start + batch_size])


def _calibration_reader(tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int) -> Any:
    """An onnxruntime `CalibrationDataReader` over the tokenised texts (built here: onnxruntime loads lazily)."""
    from onnxruntime.quantization import CalibrationDataReader

    class TextCalibrationReader(CalibrationDataReader):
        """Feeds tokenised calibration texts to the calibrator one batch at a time."""

        def __init__(self) -> None:
            self._batches = list(batched_features(tokenizer, texts, batch_size))
            self._next = iter(self._batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._next, None)

        def rewind(self) -> None:
            self._next = iter(self._batches)

    return TextCalibrationReader()


def quantize_onnx(
    onnx_dir: Path,
    out_dir: Path,
    mode: QuantizationMode = "dynamic",
    calibration_texts: Sequence[str] | None = None,
    pre_process: bool = False,
    calibration_batch_size: int = CALIBRATION_BATCH_SIZE,
    fuse: bool | None = None,
) -> Path:
    """Quantize the fp32 ONNX model folder `onnx_dir` to int8 at `out_dir` (same layout, loadable by `OnnxEncoder`).

    `calibration_texts` is required by `static` mode and refused by `dynamic` mode. `pre_process` runs
    onnxruntime's `quant_pre_process` first (see the module docstring: it works but did not help). `fuse`: apply
    onnxruntime's transformer fusions before quantizing; None (default) picks what measured best for the mode:
    fused for `dynamic`, unfused for `static` (which refuses fusion and already fused graphs).
    """
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise MissingDependencyError("quantizing needs `pip install onnxruntime onnx`") from err

    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}: use one of {', '.join(QUANTIZATION_MODES)}")
    if mode == "static" and not calibration_texts:
        raise ValueError("static quantization needs calibration_texts (corpus passages, never test queries)")
    if mode == "dynamic" and calibration_texts:
        raise ValueError("dynamic quantization takes no calibration_texts: use mode='static' to calibrate")
    if calibration_batch_size < 1:
        raise ValueError(f"calibration_batch_size must be >= 1, got {calibration_batch_size}")
    onnx_dir = Path(onnx_dir).resolve()
    check_output_dir(onnx_dir, out_dir)
    config = OnnxModelConfig.read(onnx_dir)
    if config.precision != "fp32":
        raise ValueError(f"{onnx_dir} is already {config.precision} ({config.quantization}): quantize an fp32 folder")
    fuse = mode == "dynamic" if fuse is None else fuse
    if mode == "static" and (fuse or fused_operators(onnx_dir / ONNX_MODEL_FILE)):
        raise ValueError(
            "static quantization needs an unfused graph (QDQ leaves fused attention in fp32, 2x slower): "
            "use fuse=False and a folder exported with fuse=False, or mode='dynamic'"
        )

    with staged_folder(out_dir) as staging:
        source = onnx_dir / ONNX_MODEL_FILE
        intermediates: list[Path] = []
        if fuse:
            fused = staging / f"fused-{ONNX_MODEL_FILE}"
            logger.info("fused %s", fuse_graph(source, fused) or "nothing")
            source = fused
            intermediates.append(fused)
        if pre_process:
            prepared = staging / f"prepared-{ONNX_MODEL_FILE}"
            with atomic_path(prepared) as tmp:
                # auto_merge: without it symbolic shape inference stops on the traced attention reshapes
                quant_pre_process(str(source), str(tmp), auto_merge=True)
            source = prepared
            intermediates.append(prepared)
        with atomic_path(staging / ONNX_MODEL_FILE) as tmp:
            if mode == "dynamic":
                quantize_dynamic(
                    str(source),
                    str(tmp),
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    per_channel=True,
                    # 7-bit weights: u8 x s8 pair sums cannot saturate the int16 accumulators of CPUs without
                    # VNNI, so the model is safe wherever it is served (benchmarks/students/README.md)
                    reduce_range=True,
                    weight_type=QuantType.QInt8,
                    extra_options=dict(QUANTIZER_OPTIONS),
                )
            else:
                tokenizer = TextTokenizer(onnx_dir, config)
                quantize_static(
                    str(source),
                    str(tmp),
                    _calibration_reader(tokenizer, list(calibration_texts or ()), calibration_batch_size),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    nodes_to_exclude=activation_fed_matmuls(source),
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options=dict(QUANTIZER_OPTIONS),
                )
        for path in intermediates:
            path.unlink()
        copy_tokenizer_files(onnx_dir, staging)
        write_json_atomic(staging / ONNX_CONFIG_FILE, replace(config, precision="int8", quantization=mode).to_dict())
    logger.info("quantized %s to %s (%s int8)", onnx_dir, out_dir, mode)
    return Path(out_dir)
