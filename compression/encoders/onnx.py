"""A torch-free encoder on ONNX Runtime: the fp32 or int8 graph from `onnx_export` / `quantize`, fed by `tokenizers`.

The query path of the compressed model runs through this module only. It must never import torch, transformers or
sentence-transformers, at import time or when encoding: it imports numpy, onnxruntime, tokenizers and the
stdlib-and-numpy modules `compression.encoders.base` and `compression.models`.

A model folder holds `model.onnx` (input ids, attention mask and, for BERT-style models, token type ids in; the
L2-normalised sentence embedding out, with pooling, any Dense layers and normalisation inside the graph), the
tokenizer files of the source model, and `onnx_config.json` (an `OnnxModelConfig`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compression.encoders.base import TextKind, check_kind, count_truncated, encode_in_length_order, l2_normalise
from compression.models import folder_encoder_identity, model_bytes

logger = logging.getLogger(__name__)

ONNX_MODEL_FILE = "model.onnx"
ONNX_CONFIG_FILE = "onnx_config.json"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_NAME = "sentence_embedding"
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# After each run, onnxruntime's intra-op worker threads spin waiting for more work unless this is "0". Spinning
# threads steal the cores that FAISS, the tokenizer and the other sessions of the process need next, so single-query
# encodes get several times slower with it (more so with several sessions in one process) while corpus batches get
# no faster; figures in benchmarks/latency/.
ALLOW_SPINNING = "session.intra_op.allow_spinning"
REMAKE = "re-create the folder with `semsearch quantize` (or compression.onnx_export)"


class ModelLoadError(ValueError):
    """A model folder cannot be loaded (missing, corrupt or inconsistent file); the message names the file and the fix.

    onnxruntime and tokenizers raise their own exception classes (InvalidProtobuf, NoSuchFile, Fail, ...): they are
    caught where the files are loaded and re-raised as this."""


Precision = Literal["fp32", "int8"]
QuantizationMode = Literal["dynamic", "static"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
QUANTIZATION_MODES: tuple[QuantizationMode, ...] = ("dynamic", "static")


@dataclass(frozen=True)
class OnnxModelConfig:
    """What `onnx_config.json` records about an exported (and maybe quantized) sentence-embedding graph."""

    dim: int
    max_seq_length: int
    inputs: tuple[str, ...]
    pad_token: str
    pad_token_id: int
    source_path: str
    source_fingerprint: str
    opset: int
    pooling: str = "mean"
    dense_layers: int = 0
    normalized: bool = True
    do_lower_case: bool = False
    prompt: str = ""
    output: str = OUTPUT_NAME
    precision: Precision = "fp32"
    quantization: QuantizationMode | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.inputs if name not in GRAPH_INPUTS]
        if unknown or "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ValueError(
                f"graph inputs {list(self.inputs)} are not supported: use input_ids and attention_mask, "
                f"optionally token_type_ids (allowed: {', '.join(GRAPH_INPUTS)})"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.quantization is not None and self.quantization not in QUANTIZATION_MODES:
            raise ValueError(
                f"unknown quantization {self.quantization!r}: use one of {', '.join(QUANTIZATION_MODES)} or null"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnnxModelConfig:
        return cls(**{**data, "inputs": tuple(data["inputs"])})

    @classmethod
    def read(cls, folder: Path) -> OnnxModelConfig:
        path = Path(folder) / ONNX_CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {folder} is not an ONNX model folder (make one with compression.onnx_export)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{path}: malformed JSON ({err}); {REMAKE}") from err
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path}: expected a JSON object, got {type(data).__name__}; {REMAKE}")
        known = {f.name: f for f in fields(cls)}
        missing = [name for name, f in known.items() if f.default is MISSING and name not in data]
        unknown = [name for name in data if name not in known]
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown keys {', '.join(unknown)}"] if unknown else []
        if problems:
            raise ModelLoadError(f"{path}: {'; '.join(problems)}; {REMAKE}")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ModelLoadError(f"{path}: {err}; {REMAKE}") from err


class TextTokenizer:
    """The source model's fast tokenizer: truncates to `max_seq_length`, pads to the longest text in the batch."""

    def __init__(self, folder: Path, config: OnnxModelConfig) -> None:
        from tokenizers import Tokenizer

        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the ONNX folder must carry the source model's tokenizer.json")
        self.config = config
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception for unreadable or malformed files
            raise ModelLoadError(f"{path}: not a readable tokenizer ({' '.join(str(err).split())}); {REMAKE}") from err
        self._tokenizer.enable_truncation(max_length=config.max_seq_length)
        self._tokenizer.enable_padding(pad_id=config.pad_token_id, pad_token=config.pad_token)

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        prepared = [self.config.prompt + str(text).strip() for text in texts]
        return [text.lower() for text in prepared] if self.config.do_lower_case else prepared

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the graph gets them: truncated to `max_seq_length`, special tokens included."""

        def lengths(chunk: list[str]) -> list[int]:
            return [sum(e.attention_mask) for e in self._tokenizer.encode_batch(self._prepare(chunk))]

        return count_truncated(lengths, texts, self.config.max_seq_length)

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenise `texts` into the int64 (batch, sequence) arrays the graph takes, keyed by input name."""
        encodings = self._tokenizer.encode_batch(self._prepare(texts))
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {name: np.asarray(columns[name], dtype=np.int64) for name in self.config.inputs}


def _open_session(model_path: Path, options: Any, providers: Sequence[str]) -> Any:
    """An onnxruntime session on `model_path`; a missing or unreadable graph raises `ModelLoadError` naming it."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    if not model_path.is_file():
        raise ModelLoadError(f"{model_path} not found: the ONNX model folder is incomplete; {REMAKE}")
    errors = (state.Fail, state.InvalidProtobuf, state.NoSuchFile, state.NoModel, state.InvalidGraph,
              state.InvalidArgument, state.NotImplemented, state.RuntimeException, RuntimeError, OSError)  # fmt: skip
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=list(providers))
    except errors as err:
        reason = " ".join(str(err).split())
        raise ModelLoadError(f"{model_path} is not a loadable ONNX model ({reason[:200]}); {REMAKE}") from err


class OnnxEncoder:
    """The `Encoder` protocol on ONNX Runtime: tokenise (`encode_pre`), run the graph (`encode_core`), tidy up
    (`encode_post`); `encode` chains them over length-sorted batches."""

    def __init__(
        self,
        folder: Path | str,
        threads: int | None = None,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        name: str | None = None,
        spinning: bool = False,
    ) -> None:
        """`threads`: intra-op threads (None: one per physical core). `spinning`: let idle intra-op threads spin
        between runs (onnxruntime's default); off by default, measured in benchmarks/latency/. Neither is part of
        `identity()`: they change speed, not vectors, so caches and index directories stay valid."""
        import onnxruntime as ort

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        available = ort.get_available_providers()
        missing = [provider for provider in providers if provider not in available]
        if missing or not providers:
            raise ValueError(
                f"unavailable onnxruntime providers {missing or list(providers)}: available are {', '.join(available)}"
            )
        self.folder = Path(folder).resolve()
        self.config = OnnxModelConfig.read(self.folder)
        self.name = name or self.folder.name
        self.dim = self.config.dim
        self.max_seq_length = self.config.max_seq_length
        self.precision: Precision = self.config.precision
        self.threads = threads
        self.spinning = spinning
        self.providers = tuple(providers)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one thread per physical core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(ALLOW_SPINNING, "1" if spinning else "0")
        self._session = _open_session(self.folder / ONNX_MODEL_FILE, options, self.providers)
        outputs = {output.name: output.shape for output in self._session.get_outputs()}
        if self.config.output not in outputs:
            raise ModelLoadError(
                f"{self.folder / ONNX_MODEL_FILE}: no output {self.config.output!r} (outputs: {', '.join(outputs)}), "
                f"which {ONNX_CONFIG_FILE} names; {REMAKE}"
            )
        width = outputs[self.config.output][-1] if outputs[self.config.output] else None
        if isinstance(width, int) and width != self.dim:
            raise ModelLoadError(
                f"{self.folder / ONNX_MODEL_FILE} outputs {width}-d vectors but {ONNX_CONFIG_FILE} says dim "
                f"{self.dim}; {REMAKE}"
            )
        graph_inputs = tuple(i.name for i in self._session.get_inputs())
        if set(graph_inputs) != set(self.config.inputs):
            raise ValueError(f"{self.folder}: graph inputs {graph_inputs} != configured {self.config.inputs}")
        self._tokenizer = TextTokenizer(self.folder, self.config)

    def session_setting(self, key: str) -> str | None:
        """A session config entry as the live session holds it (e.g. `ALLOW_SPINNING`); None when unset."""
        try:
            return self._session.get_session_options().get_session_config_entry(key)
        except RuntimeError:
            return None

    def encode_pre(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenise one batch into the graph's int64 inputs."""
        return self._tokenizer(texts)

    def encode_core(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph on one tokenised batch; its output is already pooled and L2-normalised."""
        return self._session.run([self.config.output], features)[0]

    def encode_post(self, vectors: np.ndarray) -> np.ndarray:
        """Return contiguous float32 unit rows (the graph normalises; this only guards the dtype and rounding)."""
        return np.ascontiguousarray(l2_normalise(vectors), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count(texts)

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        return self.encode_timed(texts, kind=kind, batch_size=batch_size)[0]

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """`encode`, also returning the seconds spent in `encode_pre` (tokenising), so callers can split the two."""
        check_kind(kind)
        forward = lambda features: self.encode_post(self.encode_core(features))  # noqa: E731
        return encode_in_length_order(texts, batch_size, self.dim, self.encode_pre, forward)

    def identity(self) -> dict[str, Any]:
        return folder_encoder_identity("onnx", self.name, self.folder, self.dim, self.max_seq_length, self.precision)

    def model_bytes(self) -> int:
        return model_bytes(self.folder)
