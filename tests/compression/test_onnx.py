"""ONNX export, int8 quantization and the torch-free ONNX encoder, on tiny seeded models (and MiniLM when slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from compression.encoders.onnx import ONNX_CONFIG_FILE, ONNX_MODEL_FILE, OnnxEncoder
from compression.onnx_export import attention_shape, export_onnx, fused_operators
from compression.quantize import quantize_onnx

SENTENCES = (
    "Hi",
    "Aspirin lowers the risk of heart attack.",
    "What is the role of microRNA in cancer cell proliferation?",
    "Vitamin D",
    "A randomised controlled trial of 1,204 adults found no effect of the intervention on mortality after 5 years.",
    "  leading and trailing spaces  ",
    "Ünïcödé, punctuation!? and numbers: 3.14159 — all tokenised the same way.",
    "cells",
    "Macrophages in adipose tissue secrete cytokines that drive insulin resistance in obese mice and humans alike.",
    "token " * 300,  # longer than max_seq_length: exercises truncation
)
CALIBRATION_TEXTS = (  # passage-like text, disjoint from SENTENCES
    "Gene expression profiling of tumour samples identified three molecular subtypes with distinct survival.",
    "The enzyme catalyses the first step of the pathway and is inhibited by its end product.",
    "Patients were followed for a median of 4.2 years; the primary outcome was hospital admission.",
    "Mutations in this receptor are associated with early onset disease in several families.",
    "We measured the concentration of the metabolite in plasma and urine before and after treatment.",
    "Knockout mice developed normally but showed impaired immune responses to viral infection.",
    "The protein localises to the nucleus, where it binds DNA at promoter regions.",
    "A meta-analysis of 23 cohort studies found a modest association between exposure and risk.",
)
BLOCKED_MODULES = ("torch", "transformers", "sentence_transformers")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session", params=[None, 48], ids=["mean", "mean-dense48"])
def tiny_model_dir(
    build_tiny_sentence_model, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_sentence_model(root / "model", seed=0, dense_dim=request.param)


@pytest.fixture(scope="session")
def torch_vectors(tiny_model_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu", local_files_only=True)
    return model.encode(list(SENTENCES), normalize_embeddings=True, convert_to_numpy=True, batch_size=4)


@pytest.fixture(scope="session")
def fp32_dir(tiny_model_dir: Path) -> Path:
    return export_onnx(tiny_model_dir, tiny_model_dir.parent / "onnx-fp32")


@pytest.fixture(scope="session")
def fused_fp32_dir(tiny_model_dir: Path) -> Path:
    return export_onnx(tiny_model_dir, tiny_model_dir.parent / "onnx-fp32-fused", fuse=True)


@pytest.fixture(scope="session")
def dynamic_dir(fp32_dir: Path) -> Path:
    return quantize_onnx(fp32_dir, fp32_dir.parent / "onnx-int8-dynamic", mode="dynamic")


@pytest.fixture(scope="session")
def static_dir(fp32_dir: Path) -> Path:
    return quantize_onnx(
        fp32_dir, fp32_dir.parent / "onnx-int8-static", mode="static", calibration_texts=CALIBRATION_TEXTS
    )


def test_fp32_graph_matches_sentence_transformers(fp32_dir: Path, torch_vectors: np.ndarray) -> None:
    vectors = OnnxEncoder(fp32_dir, threads=1).encode(SENTENCES, batch_size=3)
    assert cosines(vectors, torch_vectors).mean() >= 0.9999
    assert cosines(vectors, torch_vectors).min() >= 0.9995


def test_batch_and_sequence_axes_are_dynamic(fp32_dir: Path, torch_vectors: np.ndarray) -> None:
    encoder = OnnxEncoder(fp32_dir, threads=1)
    seen_shapes = set()
    for rows in ([1], [0, 1, 2, 3, 4, 5, 6], [9, 7]):
        features = encoder.encode_pre([SENTENCES[i] for i in rows])
        seen_shapes.add(features["input_ids"].shape)
        raw = encoder.encode_core(features)  # straight from the graph: pooled and normalised inside it
        assert raw.shape == (len(rows), encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-5)
        assert cosines(raw, torch_vectors[rows]).min() >= 0.9995
    assert len({shape[0] for shape in seen_shapes}) == 3
    assert len({shape[1] for shape in seen_shapes}) == 3
    assert max(shape[1] for shape in seen_shapes) == encoder.max_seq_length  # truncated, not overflowing


def test_int8_dynamic_stays_close_to_fp32(fp32_dir: Path, dynamic_dir: Path) -> None:
    fp32 = OnnxEncoder(fp32_dir, threads=1).encode(SENTENCES)
    int8 = OnnxEncoder(dynamic_dir, threads=1).encode(SENTENCES)
    assert cosines(int8, fp32).mean() >= 0.99
    assert (dynamic_dir / ONNX_MODEL_FILE).stat().st_size < (fp32_dir / ONNX_MODEL_FILE).stat().st_size / 2


def test_int8_static_qdq_stays_close_to_fp32(fp32_dir: Path, static_dir: Path) -> None:
    fp32 = OnnxEncoder(fp32_dir, threads=1).encode(SENTENCES)
    int8 = OnnxEncoder(static_dir, threads=1).encode(SENTENCES)
    assert cosines(int8, fp32).mean() >= 0.98
    config = json.loads((static_dir / ONNX_CONFIG_FILE).read_text())
    assert (config["precision"], config["quantization"]) == ("int8", "static")
    assert "QuantizeLinear" in (static_dir / ONNX_MODEL_FILE).read_bytes().decode("latin-1")


def op_types(folder: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(folder / ONNX_MODEL_FILE)).graph.node}


def test_fused_fp32_graph_matches_unfused(fp32_dir: Path, fused_fp32_dir: Path, torch_vectors: np.ndarray) -> None:
    assert attention_shape(fp32_dir / ONNX_MODEL_FILE) == (2, 32)  # recorded by the export: the tiny BERT's
    assert fused_operators(fp32_dir / ONNX_MODEL_FILE) == {}  # unfused by default (static quantization needs it)
    fused = fused_operators(fused_fp32_dir / ONNX_MODEL_FILE)
    assert fused.get("Attention") == 2
    assert fused.get("EmbedLayerNormalization") == 1
    unfused_vectors = OnnxEncoder(fp32_dir, threads=1).encode(SENTENCES)
    fused_vectors = OnnxEncoder(fused_fp32_dir, threads=1).encode(SENTENCES)
    np.testing.assert_allclose(fused_vectors, unfused_vectors, atol=1e-5)
    assert cosines(fused_vectors, torch_vectors).min() >= 0.9995


def test_dynamic_int8_is_fused_by_default_and_matches_unfused(
    fp32_dir: Path, dynamic_dir: Path, tmp_path: Path
) -> None:
    unfused_dir = quantize_onnx(fp32_dir, tmp_path / "unfused", mode="dynamic", fuse=False)
    assert {"QAttention", "QEmbedLayerNormalization"} <= op_types(dynamic_dir)
    assert not {"QAttention", "QEmbedLayerNormalization", "Attention"} & op_types(unfused_dir)
    fused = OnnxEncoder(dynamic_dir, threads=1).encode(SENTENCES)
    unfused = OnnxEncoder(unfused_dir, threads=1).encode(SENTENCES)
    # both are int8 with per-batch activation ranges, but quantized at different points of the graph
    np.testing.assert_allclose(fused, unfused, atol=0.05)
    assert cosines(fused, unfused).min() >= 0.99
    assert not [p for p in dynamic_dir.iterdir() if p.name.startswith("fused-")]  # the fused fp32 step is dropped


def test_static_quantization_refuses_fusion(fp32_dir: Path, fused_fp32_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unfused graph"):
        quantize_onnx(fused_fp32_dir, tmp_path / "out", mode="static", calibration_texts=CALIBRATION_TEXTS)
    with pytest.raises(ValueError, match="unfused graph"):
        quantize_onnx(fp32_dir, tmp_path / "out", mode="static", calibration_texts=CALIBRATION_TEXTS, fuse=True)
    assert not (tmp_path / "out").exists()


def test_quantized_folder_loads_like_fp32(fp32_dir: Path, dynamic_dir: Path) -> None:
    fp32_files = {p.name for p in fp32_dir.iterdir()}
    assert fp32_files == {p.name for p in dynamic_dir.iterdir()}
    assert not [p for p in dynamic_dir.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers
    fp32_config = json.loads((fp32_dir / ONNX_CONFIG_FILE).read_text())
    int8_config = json.loads((dynamic_dir / ONNX_CONFIG_FILE).read_text())
    assert int8_config == fp32_config | {"precision": "int8", "quantization": "dynamic"}


def test_encoder_returns_unit_float32_rows_of_model_dim(
    tiny_model_dir: Path, fp32_dir: Path, dynamic_dir: Path
) -> None:
    expected_dim = 48 if _has_dense(tiny_model_dir) else 32
    for folder, precision in ((fp32_dir, "fp32"), (dynamic_dir, "int8")):
        encoder = OnnxEncoder(folder, threads=1)
        vectors = encoder.encode(SENTENCES, kind="passage", batch_size=4)
        assert vectors.dtype == np.float32
        assert vectors.flags.c_contiguous
        assert vectors.shape == (len(SENTENCES), expected_dim) == (len(SENTENCES), encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert encoder.encode([]).shape == (0, expected_dim)
        identity = encoder.identity()
        assert identity["type"] == "onnx"
        assert identity["precision"] == precision
        assert identity["dim"] == expected_dim
        assert identity["max_seq_length"] == 128
        assert encoder.model_bytes() > 0


def _has_dense(model_dir: Path) -> bool:
    modules = json.loads((model_dir / "modules.json").read_text())
    return any(module["type"].endswith("Dense") for module in modules)


def test_encoder_rejects_bad_arguments(fp32_dir: Path) -> None:
    with pytest.raises(ValueError, match="CPUExecutionProvider"):
        OnnxEncoder(fp32_dir, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="threads"):
        OnnxEncoder(fp32_dir, threads=0)
    with pytest.raises(ValueError, match="query, passage"):
        OnnxEncoder(fp32_dir, threads=1).encode(["x"], kind="document")  # type: ignore[arg-type]


def test_quantize_rejects_bad_arguments(fp32_dir: Path, dynamic_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dynamic, static"):
        quantize_onnx(fp32_dir, tmp_path / "out", mode="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calibration_texts"):
        quantize_onnx(fp32_dir, tmp_path / "out", mode="static")
    with pytest.raises(ValueError, match="already int8"):
        quantize_onnx(dynamic_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


TORCH_FREE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {blocked!r}
    attempts = []

    class BlockHeavyImports(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"blocked import of {{name}}")
            return None

    sys.meta_path.insert(0, BlockHeavyImports())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker does not work")
    attempts.clear()

    from compression.encoders.onnx import OnnxEncoder

    encoder = OnnxEncoder(sys.argv[1], threads=1)
    vectors = encoder.encode(["does aspirin prevent heart attacks?"])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({{"shape": list(vectors.shape), "dtype": str(vectors.dtype), "norm": float((vectors ** 2).sum()),
                      "dim": encoder.dim, "loaded": loaded, "attempts": attempts}}))
    """
)


def test_query_path_is_torch_free(dynamic_dir: Path) -> None:
    script = TORCH_FREE_SCRIPT.format(blocked=BLOCKED_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", script, str(dynamic_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [1, report["dim"]]
    assert report["dtype"] == "float32"
    assert abs(report["norm"] - 1.0) < 1e-5
    assert report["loaded"] == []
    assert report["attempts"] == []


SLOW_SENTENCES = (
    "Aspirin lowers the risk of heart attack.",
    "What is the role of microRNA in cancer cell proliferation?",
    "Vitamin D deficiency and bone density in older adults",
    "Macrophages in adipose tissue secrete cytokines that drive insulin resistance.",
    "A randomised controlled trial found no effect of the intervention on mortality after five years.",
    "cells",
    "Gene expression profiling identified three molecular subtypes of the tumour with distinct survival.",
    "The enzyme catalyses the first step of the pathway and is inhibited by its end product.",
)


@pytest.mark.slow
def test_minilm_export_and_dynamic_int8(tmp_path: Path) -> None:
    from compression.encoders import SentenceTransformerEncoder
    from compression.models import resolve_model

    minilm = resolve_model("minilm")
    fp32_dir = export_onnx(minilm.path, tmp_path / "minilm-onnx")
    int8_dir = quantize_onnx(fp32_dir, tmp_path / "minilm-int8", mode="dynamic")
    reference = SentenceTransformerEncoder(minilm, threads=1).encode(SLOW_SENTENCES)
    fp32 = OnnxEncoder(fp32_dir, threads=1).encode(SLOW_SENTENCES)
    int8 = OnnxEncoder(int8_dir, threads=1).encode(SLOW_SENTENCES)
    assert fp32.shape == int8.shape == (len(SLOW_SENTENCES), 384)
    assert cosines(fp32, reference).mean() >= 0.9999
    assert cosines(int8, fp32).mean() >= 0.99


def test_dynamic_int8_weights_use_seven_bits(dynamic_dir: Path) -> None:
    """Reduced-range weights: u8 x s8 pairs cannot saturate int16 accumulators on CPUs without VNNI."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(dynamic_dir / "model.onnx"))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights  # the MatMul weights are stored as int8
    # symmetric 7-bit: |w| <= 64, so 2 x 255 x 64 = 32,640 fits an int16 (full-range weights reach 127)
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
