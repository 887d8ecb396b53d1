"""Structured pruning (`compression.distill.pruning`) on a tiny BERT and a tiny MPNet, checked against independent
numpy importances and against the unpruned model with the dropped neurons / heads zeroed out."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from compression.distill import (
    DistillConfig,
    PruningSpec,
    build_student,
    parse_pruning,
    parse_student,
    prune_ffn,
    prune_heads,
)
from compression.models import resolve_model

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

INTERMEDIATE = 64


def _build_tiny_mpnet(out_dir: Path) -> Path:
    """A 2-layer MPNet (hidden 32, 4 heads, intermediate 64) -> mean Pooling -> Normalize, with the MiniLM tokenizer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import MPNetConfig, MPNetModel

    minilm = resolve_model("minilm").path
    vocab_size = sum(1 for _ in (minilm / "vocab.txt").open(encoding="utf-8"))
    hf_dir = out_dir.parent / f"{out_dir.name}-hf"
    torch.manual_seed(5)
    config = MPNetConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=INTERMEDIATE,
        pad_token_id=0,
    )
    MPNetModel(config).save_pretrained(hf_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(minilm / name, hf_dir / name)
    modules = [Transformer(str(hf_dir), max_seq_length=64), Pooling(32, pooling_mode="mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def tiny_bert(build_tiny_sentence_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_model(tmp_path_factory.mktemp("bert") / "model", seed=7, max_seq_length=64)


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_mpnet(tmp_path_factory.mktemp("mpnet") / "model")


@pytest.fixture(params=["tiny_bert", "tiny_mpnet"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def _load(path: Path) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True).eval()


def _encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    return model.encode(texts, convert_to_numpy=True, normalize_embeddings=False, batch_size=3)


def _ffn_weights(model: SentenceTransformer) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(W_in, b_in, W_out) of every layer, as numpy copies."""
    return [
        (
            layer.intermediate.dense.weight.detach().numpy().copy(),
            layer.intermediate.dense.bias.detach().numpy().copy(),
            layer.output.dense.weight.detach().numpy().copy(),
        )
        for layer in model[0].auto_model.encoder.layer
    ]


def _attention_linears(layer: Any) -> tuple[list[torch.nn.Linear], torch.nn.Linear]:
    attention = layer.attention
    if hasattr(attention, "attn"):
        return [attention.attn.q, attention.attn.k, attention.attn.v], attention.attn.o
    return [attention.self.query, attention.self.key, attention.self.value], attention.output.dense


def test_parse_pruning_reads_the_suffix_and_leaves_plain_specs_alone(tmp_path: Path) -> None:
    assert parse_pruning("teacher-layers:0,1,10,11@ffn=1536,heads=8") == (
        "teacher-layers:0,1,10,11",
        PruningSpec(ffn=1536, heads=8),
    )
    assert parse_pruning("minilm@heads=6") == ("minilm", PruningSpec(heads=6))
    assert parse_pruning("minilm-layers:3@ffn=700") == ("minilm-layers:3", PruningSpec(ffn=700))
    for plain in ("minilm", "teacher-layers:6", "teacher-layers:11,", "some/folder"):
        assert parse_pruning(plain) == (plain, None)
    for bad in ("minilm@", "minilm@ffn", "minilm@ffn=0", "minilm@ffn=-3", "minilm@ffn=x", "minilm@mlp=4",
                "minilm@ffn=4,ffn=8", "teacher-layers:2@ffn=4,", "teacher-layers:2@heads=2;ffn=3"):  # fmt: skip
        with pytest.raises(ValueError, match="SPEC@ffn=N,heads=H"):
            parse_pruning(bad)
    folder = tmp_path / "model@ffn=3"  # a folder name may hold an `@`: it is no suffix
    folder.mkdir()
    assert parse_pruning(str(folder)) == (str(folder), None)
    assert parse_student(str(folder)) == ("folder", str(folder))


def test_parse_student_strips_an_ffn_suffix_and_refuses_heads() -> None:
    assert parse_student("teacher-layers:0,1,10,11@ffn=1536") == ("teacher-layers", [0, 1, 10, 11])
    assert parse_student("teacher-layers:4@ffn=1536") == ("teacher-layers", 4)
    assert parse_student("minilm@ffn=768") == ("minilm", "minilm")
    assert parse_student("minilm-layers:0,5@ffn=768") == ("minilm-layers", [0, 5])
    with pytest.raises(ValueError, match="SPEC@ffn=N"):
        parse_student("teacher-layers:0,11@ffn=1536,heads=8")
    with pytest.raises(ValueError, match="SPEC@ffn=N,heads=H"):
        DistillConfig(student="teacher-layers:0,11@ffm=1536")
    with pytest.raises(ValueError, match="increasing order"):
        parse_student("teacher-layers:3,1@ffn=8")


def test_keeping_every_ffn_neuron_changes_nothing(
    model_dir: Path, make_sentences: Callable[[int, int], list[str]]
) -> None:
    texts = make_sentences(6, 1)
    model = _load(model_dir)
    before = _encode(model, texts)
    assert prune_ffn(model, INTERMEDIATE) == [list(range(INTERMEDIATE))] * 2
    np.testing.assert_allclose(_encode(model, texts), before, atol=1e-6)


def test_ffn_pruning_keeps_the_top_neurons_and_equals_zeroing_the_rest(
    model_dir: Path, make_sentences: Callable[[int, int], list[str]]
) -> None:
    texts, keep = make_sentences(6, 2), 24
    model, reference = _load(model_dir), _load(model_dir)
    weights = _ffn_weights(model)
    kept = prune_ffn(model, keep)
    hf_model = model[0].auto_model
    assert hf_model.config.intermediate_size == keep
    for layer_kept, (w_in, b_in, w_out), layer, ref_layer in zip(
        kept, weights, hf_model.encoder.layer, reference[0].auto_model.encoder.layer, strict=True
    ):
        importance = np.linalg.norm(w_in, axis=1) * np.linalg.norm(w_out, axis=0)
        expected = sorted(np.argsort(-importance)[:keep].tolist())
        assert layer_kept == expected
        assert layer.intermediate.dense.weight.shape == (keep, 32)
        assert layer.output.dense.weight.shape == (32, keep)
        np.testing.assert_array_equal(layer.intermediate.dense.weight.detach().numpy(), w_in[expected])
        np.testing.assert_array_equal(layer.intermediate.dense.bias.detach().numpy(), b_in[expected])
        np.testing.assert_array_equal(layer.output.dense.weight.detach().numpy(), w_out[:, expected])
        dropped = sorted(set(range(INTERMEDIATE)) - set(expected))
        with torch.no_grad():  # GELU(0) = 0: a zeroed neuron adds nothing, as a removed one
            ref_layer.intermediate.dense.weight[dropped] = 0.0
            ref_layer.intermediate.dense.bias[dropped] = 0.0
    pruned = _encode(model, texts)
    np.testing.assert_allclose(pruned, _encode(reference, texts), atol=1e-5)
    assert not np.allclose(pruned, _encode(_load(model_dir), texts), atol=1e-3)  # pruning did change the model
    with pytest.raises(ValueError, match="1 <= N <= 24"):
        prune_ffn(model, 25)


def test_an_ffn_pruned_model_saves_reloads_and_exports_to_onnx(model_dir: Path, tmp_path: Path, make_sentences) -> None:
    from compression.encoders.onnx import OnnxEncoder
    from compression.onnx_export import export_onnx

    texts = make_sentences(7, 3)
    model = _load(model_dir)
    prune_ffn(model, 20)
    expected = _encode(model, texts)
    model.save(str(tmp_path / "pruned"))
    loaded = _load(tmp_path / "pruned")
    assert loaded[0].auto_model.config.intermediate_size == 20
    assert loaded[0].auto_model.encoder.layer[1].output.dense.weight.shape == (32, 20)
    np.testing.assert_allclose(_encode(loaded, texts), expected, atol=1e-6)
    onnx_dir = export_onnx(tmp_path / "pruned", tmp_path / "onnx")
    vectors = OnnxEncoder(onnx_dir, threads=1).encode(texts, batch_size=3)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert vectors.shape == unit.shape
    assert np.sum(vectors * unit, axis=1).min() >= 0.9999


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_head_pruning_drops_the_weakest_heads_and_still_runs(
    model_dir: Path, attention: str, make_sentences: Callable[[int, int], list[str]]
) -> None:
    texts = make_sentences(6, 4)
    model, reference = _load(model_dir), _load(model_dir)
    hf_model = model[0].auto_model
    if attention == "sdpa" and not hf_model._supports_sdpa:
        pytest.skip(f"{type(hf_model).__name__} has no SDPA attention")
    hf_model.set_attn_implementation(attention)
    reference[0].auto_model.set_attn_implementation(attention)
    layers = hf_model.encoder.layer
    heads = hf_model.config.num_attention_heads
    size = 32 // heads
    keep = heads // 2
    importances = []
    for layer in layers:
        qkv, out = _attention_linears(layer)
        rows = np.concatenate([lin.weight.detach().numpy().reshape(heads, -1) for lin in qkv], axis=1)
        cols = out.weight.detach().numpy().reshape(32, heads, size).transpose(1, 0, 2).reshape(heads, -1)
        importances.append(np.linalg.norm(rows, axis=1) * np.linalg.norm(cols, axis=1))
    shared = hasattr(hf_model.encoder, "relative_attention_bias")
    if shared:  # MPNet: one head set for every layer, as the relative position bias is shared
        expected = [sorted(np.argsort(-np.sum(importances, axis=0))[:keep].tolist())] * len(layers)
    else:
        expected = [sorted(np.argsort(-scores)[:keep].tolist()) for scores in importances]
    assert prune_heads(model, keep) == expected
    for layer, kept, ref_layer in zip(layers, expected, reference[0].auto_model.encoder.layer, strict=True):
        qkv, out = _attention_linears(layer)
        assert all(lin.weight.shape == (keep * size, 32) for lin in qkv)
        assert out.weight.shape == (32, keep * size)
        dropped = [i for h in range(heads) if h not in kept for i in range(h * size, (h + 1) * size)]
        with torch.no_grad():  # a head whose output columns are zero adds nothing, as a removed one
            _attention_linears(ref_layer)[1].weight[:, dropped] = 0.0
    if shared:
        assert hf_model.encoder.relative_attention_bias.weight.shape[1] == keep
    pruned = _encode(model, texts)
    assert pruned.shape == (6, 32)
    assert np.isfinite(pruned).all()
    np.testing.assert_allclose(pruned, _encode(reference, texts), atol=1e-5)
    with pytest.raises(ValueError, match=f"1 <= H <= {keep}"):
        prune_heads(model, keep + 1)


def test_build_student_prunes_the_ffn_of_the_kept_layers(tiny_four_layers: Path, tmp_path: Path) -> None:
    config = DistillConfig(student="teacher-layers:1,3@ffn=16", teacher=str(tiny_four_layers), max_seq_length=32)
    student = build_student(config, teacher_dim=32)
    hf_model = student.model[0].auto_model
    assert student.kept_layers == [1, 3]
    assert hf_model.config.intermediate_size == 16
    assert [layer.intermediate.dense.out_features for layer in hf_model.encoder.layer] == [16, 16]
    unpruned = build_student(DistillConfig(student="teacher-layers:1,3", teacher=str(tiny_four_layers)), 32)
    assert unpruned.model[0].auto_model.config.intermediate_size == INTERMEDIATE
    with pytest.raises(ValueError, match="1 <= N <= 64"):
        build_student(DistillConfig(student="teacher-layers:2@ffn=65", teacher=str(tiny_four_layers)), 32)


def test_slicing_by_hand_matches_transformers_prune_linear_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.pytorch_utils

    from compression.distill.pruning import _slice_linear

    torch.manual_seed(0)
    linear, index = torch.nn.Linear(6, 5), torch.tensor([0, 2, 3])
    with_transformers = [_slice_linear(linear, index, dim) for dim in (0, 1)]
    monkeypatch.delattr(transformers.pytorch_utils, "prune_linear_layer")
    by_hand = [_slice_linear(linear, index, dim) for dim in (0, 1)]
    for ours, theirs in zip(by_hand, with_transformers, strict=True):
        assert ours.weight.shape == theirs.weight.shape
        assert torch.equal(ours.weight, theirs.weight)
        assert torch.equal(ours.bias, theirs.bias)
    assert torch.equal(by_hand[0].weight, linear.weight[index])
    assert torch.equal(by_hand[1].bias, linear.bias)
