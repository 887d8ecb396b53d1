"""Export a sentence-transformers folder to one ONNX graph that maps token ids straight to the unit sentence vector.

Supported pipelines: Transformer -> Pooling (mean) -> any number of Dense -> optional Normalize. The graph always
ends with L2 normalisation, because every `Encoder` returns unit vectors. torch and sentence-transformers are
imported lazily inside `export_onnx`, so importing this module (as `quantize` does) stays cheap and torch-free.

Exporter choice: the TorchScript tracer (`torch.onnx.export(..., dynamo=False)`). It needs only the `onnx`
package, while the dynamo exporter also needs `onnxscript` and `onnx-ir`, and for these encoders tracing is exact:
the forward has no data-dependent control flow once the attention mask is always materialised (transformers skips
its "no padding, drop the mask" shortcut while tracing, and the example batch is padded anyway). Attention is
switched to the eager implementation for the export: it traces to plain MatMul/Softmax nodes, which the ONNX
Runtime optimiser and the int8 quantizer both handle. `export_onnx` checks the result on a batch of another size
and length than the traced one, so a shape baked into the trace fails the export instead of the search.

Fusion (`fuse=True`; off by default here, on by default in `quantize`'s dynamic mode): onnxruntime's transformer
optimizer (`optimize_model`, model type "bert") rewrites the traced graph into its fused kernels
(EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu). Measured at batch 1 (one 8-token query,
2 threads, p50 of 300 runs interleaved with the unfused graph, onnxruntime 1.32):
- all-MiniLM-L6-v2 fuses fully: fp32 5.83 -> 5.05 ms (-13%), dynamic int8 3.05 -> 2.53 ms (-17%; on a loaded
  machine, best of 600 runs 1.88 -> 1.55 ms), at cosine 0.99+ between fused and unfused int8;
- MPNet (the teacher and its layer slices) does not fuse its attention: the relative position bias added to the
  scores breaks the pattern, so only SkipLayerNormalization and BiasGelu fuse, which ONNX Runtime also does when it
  loads the unfused graph; teacher-layers:0,11 times the same (fp32 6.72 vs 6.71 ms, int8 2.55 vs 2.56 ms; repeat
  runs differed by up to 5% either way, within the noise) and its fused int8 vectors equal the unfused ones;
- static (QDQ) quantization of a fused graph leaves the fused Attention in fp32 behind dequantized weights: MiniLM
  static int8 took 6.97 ms fused vs 3.63 ms unfused. So the exported fp32 folder stays unfused by default (it is the
  source of both quantization modes), and `quantize_onnx` fuses on its way to dynamic int8.
onnxruntime cannot detect the number of attention heads in the traced graph (the head axis is reshaped as -1), so
the export records it, with the hidden size, in the model's metadata (`ATTENTION_HEADS_KEY`, `HIDDEN_SIZE_KEY`),
where `fuse_graph` reads them; without them only the layer norms and GELUs fuse.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders.onnx import (
    ONNX_CONFIG_FILE,
    ONNX_MODEL_FILE,
    OUTPUT_NAME,
    TOKENIZER_FILE,
    OnnxModelConfig,
)
from compression.models import model_fingerprint
from semsearch_common.atomic import atomic_path, copy_file_atomic, staged_folder, write_json_atomic
from semsearch_common.errors import MissingDependencyError

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
TOKENIZER_FILES = (
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)
SUPPORTED_MODULES = ("Transformer", "Pooling (mean)", "Dense", "Normalize")
TRACE_TEXTS = ("a short query", "a longer passage, so that the traced example batch is padded and uses its mask")
CHECK_TEXTS = (
    "check",
    "the exported graph must handle another batch size",
    "and another sequence length than the example it was traced with",
)
CHECK_MIN_COSINE = 0.9999
FUSION_MODEL_TYPE = "bert"  # onnxruntime's BERT fusions; they match BERT-style encoders (MiniLM; MPNet in part)
CONTRIB_DOMAIN = "com.microsoft"
ATTENTION_HEADS_KEY = "semsearch.num_attention_heads"
HIDDEN_SIZE_KEY = "semsearch.hidden_size"
FUSED_OPS = (
    "EmbedLayerNormalization",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


def copy_tokenizer_files(source_dir: Path, target_dir: Path) -> list[str]:
    """Copy the tokenizer files present in `source_dir` into `target_dir`; return the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(source_dir) / name).is_file():
            copy_file_atomic(Path(source_dir) / name, Path(target_dir) / name)
            copied.append(name)
    return copied


def check_output_dir(source_dir: Path, out_dir: Path) -> None:
    source, out = Path(source_dir).resolve(), Path(out_dir).resolve()
    if out == source or source in out.parents:
        raise ValueError(f"output folder {out_dir} must lie outside the source folder {source_dir}")


def fuse_graph(
    model_path: Path, out_path: Path, num_heads: int | None = None, hidden_size: int | None = None
) -> dict[str, int]:
    """Write the ONNX model at `model_path` to `out_path` with onnxruntime's transformer fusions applied; return the
    count of each fused operator (none fused: an empty dict). `num_heads`/`hidden_size` None: read from the model's
    metadata (written by `export_onnx`); 0: let onnxruntime detect them (it fails on traced graphs)."""
    from onnxruntime.transformers.optimizer import optimize_model

    recorded_heads, recorded_hidden = attention_shape(model_path)
    optimized = optimize_model(
        str(model_path),
        model_type=FUSION_MODEL_TYPE,
        num_heads=recorded_heads if num_heads is None else num_heads,
        hidden_size=recorded_hidden if hidden_size is None else hidden_size,
    )
    with atomic_path(out_path) as tmp:
        optimized.save_model_to_file(str(tmp))
    return {op: int(count) for op, count in optimized.get_fused_operator_statistics().items() if count}


def attention_shape(model_path: Path) -> tuple[int, int]:
    """(attention heads, hidden size) as `export_onnx` records them in the model's metadata; (0, 0) when absent."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
    return int(props.get(ATTENTION_HEADS_KEY, 0)), int(props.get(HIDDEN_SIZE_KEY, 0))


def fused_operators(model_path: Path) -> dict[str, int]:
    """Count the nodes of onnxruntime's fused transformer operators (`FUSED_OPS`) in the ONNX model at `model_path`."""
    import onnx

    counts = Counter(
        node.op_type
        for node in onnx.load(str(model_path), load_external_data=False).graph.node
        if node.domain == CONTRIB_DOMAIN and node.op_type in FUSED_OPS
    )
    return dict(counts)


def _pipeline_parts(model: Any) -> tuple[Any, list[Any]]:
    """Check the module chain is Transformer -> mean Pooling -> Dense* -> Normalize?; return (transformer, denses)."""
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    modules = list(model)
    names = [type(module).__name__ for module in modules]
    unsupported = ValueError(
        f"cannot export the module chain {' -> '.join(names)}: supported is "
        f"{SUPPORTED_MODULES[0]} -> {SUPPORTED_MODULES[1]} -> {SUPPORTED_MODULES[2]} (any number) -> "
        f"{SUPPORTED_MODULES[3]} (optional)"
    )
    if len(modules) < 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        raise unsupported
    pooling_mode = modules[1].pooling_mode
    modes = (pooling_mode,) if isinstance(pooling_mode, str) else tuple(pooling_mode)
    if modes != ("mean",):
        raise ValueError(f"cannot export pooling mode {modes}: only mean pooling is supported")
    rest = modules[2:]
    if rest and isinstance(rest[-1], Normalize):
        rest = rest[:-1]
    if not all(isinstance(module, Dense) for module in rest):
        raise unsupported
    for dense in rest:
        if dense.module_input_name != OUTPUT_NAME or dense.module_output_name != OUTPUT_NAME:
            raise ValueError(f"cannot export a Dense layer that reads or writes other than {OUTPUT_NAME!r}")
    if not modules[1].include_prompt and _default_prompt(model):
        raise ValueError("cannot export a model whose pooling excludes its default prompt: drop the default prompt")
    return modules[0], rest


def _default_prompt(model: Any) -> str:
    name = getattr(model, "default_prompt_name", None)
    return (getattr(model, "prompts", None) or {}).get(name, "") if name else ""


def _build_graph_module(transformer: Any, denses: Sequence[Any], inputs: Sequence[str]) -> Any:
    """A torch module from token ids to the unit sentence embedding: transformer, masked mean, Dense*, L2 norm."""
    import torch

    class SentenceEmbeddingGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer.auto_model
            self.denses = torch.nn.ModuleList(denses)
            self.uses_token_types = "token_type_ids" in inputs

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            kwargs = {"token_type_ids": token_type_ids} if self.uses_token_types else {}
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            embedding = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            for dense in self.denses:
                embedding = dense({OUTPUT_NAME: embedding})[OUTPUT_NAME]
            return torch.nn.functional.normalize(embedding, p=2, dim=-1)

    return SentenceEmbeddingGraph().eval()


def _record_attention_shape(model_path: Path, hf_config: Any) -> None:
    """Store the attention heads and hidden size of `hf_config` in the model's metadata, for `fuse_graph`."""
    import onnx

    heads, hidden = getattr(hf_config, "num_attention_heads", None), getattr(hf_config, "hidden_size", None)
    if not heads or not hidden:
        return
    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, props | {ATTENTION_HEADS_KEY: str(heads), HIDDEN_SIZE_KEY: str(hidden)})
    onnx.save(model, str(model_path))


def export_onnx(model_dir: Path, out_dir: Path, opset: int = DEFAULT_OPSET, fuse: bool = False) -> Path:
    """Export the sentence-transformers folder `model_dir` to an fp32 ONNX model folder at `out_dir`; return it.

    `fuse`: apply onnxruntime's transformer fusions (faster fp32 for BERT-style models, but the folder can then only
    be quantized in dynamic mode; see the module docstring). The fresh-batch check runs on the graph as written.
    """
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - core dependency
        raise MissingDependencyError("exporting needs `pip install torch==2.13.0 sentence-transformers onnx`") from err
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
    except ImportError as err:
        raise MissingDependencyError("exporting needs the onnx package: `pip install onnx`") from err
    import onnxruntime as ort

    model_dir = Path(model_dir).resolve()
    check_output_dir(model_dir, out_dir)
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True).eval()
    transformer, denses = _pipeline_parts(model)
    hf_model = transformer.auto_model
    if hasattr(hf_model, "set_attn_implementation"):
        hf_model.set_attn_implementation("eager")
    tokenizer = model.tokenizer
    forward_params = set(inspect.signature(hf_model.forward).parameters)
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in forward_params:
        inputs.append("token_type_ids")
    graph = _build_graph_module(transformer, denses, inputs)
    max_seq_length = int(model.max_seq_length or tokenizer.model_max_length)
    config = OnnxModelConfig(
        dim=int(model.get_embedding_dimension()),
        max_seq_length=max_seq_length,
        inputs=tuple(inputs),
        pad_token=str(tokenizer.pad_token),
        pad_token_id=int(tokenizer.pad_token_id),
        source_path=str(model_dir),
        source_fingerprint=model_fingerprint(model_dir),
        opset=opset,
        pooling="mean",
        dense_layers=len(denses),
        do_lower_case=bool(getattr(transformer, "do_lower_case", False)),
        prompt=_default_prompt(model),
    )

    def tokenise(texts: Sequence[str]) -> dict[str, Any]:
        batch = tokenizer(
            [config.prompt + text for text in texts],
            padding=True,
            truncation=True,
            max_length=max_seq_length,
            return_tensors="pt",
        )
        return {name: batch[name] for name in inputs}

    example = tokenise(TRACE_TEXTS)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in inputs} | {OUTPUT_NAME: {0: "batch"}}
    with staged_folder(out_dir) as staging:
        with atomic_path(staging / ONNX_MODEL_FILE) as tmp, torch.no_grad(), warnings.catch_warnings():
            # Known and harmless here: the legacy exporter's deprecation notice (chosen on purpose, see above), the
            # tracer's note on transformers' cache-padding check (always 0 without a cache) and the note on
            # advanced indexing with negative indices (the mask code indexes with non-negative aranges). A trace that
            # does not generalise is caught by the fresh-batch check below, warning or not.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
            warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator of advanced indexing")
            torch.onnx.export(
                graph,
                tuple(example[name] for name in inputs),
                str(tmp),
                dynamo=False,
                input_names=inputs,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
            _record_attention_shape(tmp, hf_model.config)
        if fuse:
            fused = fuse_graph(staging / ONNX_MODEL_FILE, staging / ONNX_MODEL_FILE)
            logger.info("fused %s", fused or "nothing")
        copied = copy_tokenizer_files(model_dir, staging)
        if TOKENIZER_FILE not in copied:  # a fast tokenizer can always write its tokenizer.json
            with atomic_path(staging / TOKENIZER_FILE) as tmp:
                tokenizer.backend_tokenizer.save(str(tmp))
        write_json_atomic(staging / ONNX_CONFIG_FILE, config.to_dict())

        check = tokenise(CHECK_TEXTS)
        with torch.no_grad():
            expected = graph(*(check[name] for name in inputs)).numpy()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(staging / ONNX_MODEL_FILE), options, providers=["CPUExecutionProvider"])
        got = session.run([OUTPUT_NAME], {name: check[name].numpy() for name in inputs})[0]
        cosine = float(np.min(np.sum(expected * got, axis=1)))
        if got.shape != expected.shape or cosine < CHECK_MIN_COSINE:
            raise RuntimeError(
                f"exported graph disagrees with torch on a fresh batch (shape {got.shape} vs {expected.shape}, "
                f"min cosine {cosine:.6f} < {CHECK_MIN_COSINE}): the trace did not generalise"
            )
    logger.info("exported %s to %s (dim %d, inputs %s)", model_dir, out_dir, config.dim, inputs)
    return Path(out_dir)
