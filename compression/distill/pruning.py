"""Structured pruning inside the kept transformer layers: FFN neurons (`prune_ffn`) and attention heads
(`prune_heads`), each ranked by weight magnitude, and the student-spec suffix `SPEC@ffn=N,heads=H` that asks for
them (`parse_pruning`).

FFN pruning keeps N neurons in every layer and sets `config.intermediate_size = N`, so the model saves
and loads as a normal, smaller transformers model. Head pruning works in memory only: transformers 5 has no
`prune_heads` / `config.pruned_heads`, so a head-pruned model cannot be reloaded, and students refuse `heads=`.

Supported layers are BERT-style (`attention.self.query/key/value`, `attention.output.dense`) and MPNet
(`attention.attn.q/k/v/o`); both keep the FFN in `intermediate.dense` and `output.dense`. MPNet's relative position
bias is shared by all layers, one column per head, so head pruning keeps one head set in every MPNet layer (ranked by
importance summed over the layers) and slices the bias to it.

torch and transformers are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compression.distill.config import PruningSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _hf_model(model: Any) -> Any:
    """The transformers model inside a sentence-transformers model, or `model` itself."""
    import torch

    if isinstance(model, torch.nn.Sequential):
        return model[0].auto_model
    return model


def _layers(hf_model: Any) -> Any:
    layers = getattr(getattr(hf_model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"cannot prune {type(hf_model).__name__}: supported are BERT-style and MPNet encoders")
    return layers


def _ffn(layer: Any) -> tuple[Any, Any]:
    """(hidden -> intermediate Linear, intermediate -> hidden Linear) of a layer."""
    try:
        return layer.intermediate.dense, layer.output.dense
    except AttributeError as err:
        raise ValueError(f"cannot prune {type(layer).__name__}: no intermediate.dense / output.dense") from err


def _attention(layer: Any) -> tuple[Any, tuple[str, str, str], Any, str]:
    """(self-attention module, its q/k/v Linear names, the module holding the output Linear, that Linear's name)."""
    attention = layer.attention
    if hasattr(attention, "attn"):  # MPNet
        return attention.attn, ("q", "k", "v"), attention.attn, "o"
    if hasattr(attention, "self") and hasattr(attention, "output"):  # BERT, RoBERTa, XLM-R
        return attention.self, ("query", "key", "value"), attention.output, "dense"
    raise ValueError(f"cannot prune heads of {type(layer).__name__}: supported are BERT-style and MPNet layers")


def _slice_linear(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A new Linear keeping `index` along dim 0 (output rows, bias too) or 1 (input columns)."""
    try:
        from transformers.pytorch_utils import prune_linear_layer
    except ImportError:  # a transformers version without it
        import torch

        weight = linear.weight.detach().index_select(dim, index).clone()
        bias = None if linear.bias is None else linear.bias.detach().clone()
        if bias is not None and dim == 0:
            bias = bias[index]
        new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None:
                new.bias.copy_(bias)
        return new
    return prune_linear_layer(linear, index, dim=dim).to(dtype=linear.weight.dtype)


def ffn_importance(layer: Any) -> torch.Tensor:
    """Importance of each FFN neuron j of a transformer layer: ||W_in[j, :]||_2 * ||W_out[:, j]||_2."""
    w_in, w_out = _ffn(layer)
    return w_in.weight.detach().float().norm(dim=1) * w_out.weight.detach().float().norm(dim=0)


def prune_ffn(model: Any, keep: int) -> list[list[int]]:
    """Keep the `keep` most important FFN neurons of every layer of `model` (a sentence-transformers or transformers
    model) in place; set `config.intermediate_size`; return each layer's kept neuron indices, ascending."""
    import torch

    hf_model = _hf_model(model)
    layers = _layers(hf_model)
    kept_all: list[list[int]] = []
    for layer in layers:
        size = _ffn(layer)[0].out_features
        if not 1 <= keep <= size:
            raise ValueError(f"cannot keep ffn={keep} of {size} FFN neurons: use 1 <= N <= {size}")
        kept = torch.topk(ffn_importance(layer), keep).indices.sort().values
        layer.intermediate.dense = _slice_linear(layer.intermediate.dense, kept, dim=0)
        layer.output.dense = _slice_linear(layer.output.dense, kept, dim=1)
        kept_all.append(kept.tolist())
    hf_model.config.intermediate_size = keep
    return kept_all


def head_importance(layer: Any) -> torch.Tensor:
    """Importance of each attention head h of a layer: the L2 norm of its q/k/v weight rows times the L2 norm of its
    columns of the attention output projection."""
    import torch

    attention, qkv, owner, out = _attention(layer)
    heads, size = attention.num_attention_heads, attention.attention_head_size
    rows = torch.cat([getattr(attention, name).weight.detach().float().reshape(heads, -1) for name in qkv], dim=1)
    cols = getattr(owner, out).weight.detach().float().reshape(-1, heads, size).transpose(0, 1).reshape(heads, -1)
    return rows.norm(dim=1) * cols.norm(dim=1)


def prune_heads(model: Any, keep: int) -> list[list[int]]:
    """Keep the `keep` most important attention heads of every layer of `model` in place (in memory only: see the
    module docstring); return each layer's kept head indices, ascending. With a shared relative position bias
    (MPNet), one head set is kept in every layer and the bias sliced to it."""
    import torch

    hf_model = _hf_model(model)
    layers = _layers(hf_model)
    heads = _attention(layers[0])[0].num_attention_heads
    if not 1 <= keep <= heads:
        raise ValueError(f"cannot keep heads={keep} of {heads} attention heads: use 1 <= H <= {heads}")
    scores = torch.stack([head_importance(layer) for layer in layers])
    bias = getattr(hf_model.encoder, "relative_attention_bias", None)
    if bias is not None:  # shared by every layer, one column per head
        shared = torch.topk(scores.sum(dim=0), keep).indices.sort().values
        kept_heads = [shared] * len(layers)
        new_bias = torch.nn.Embedding(bias.num_embeddings, keep).to(bias.weight)
        with torch.no_grad():
            new_bias.weight.copy_(bias.weight[:, shared])
        hf_model.encoder.relative_attention_bias = new_bias
        hf_model.encoder.n_heads = keep
    else:
        kept_heads = [torch.topk(row, keep).indices.sort().values for row in scores]
    for layer, kept in zip(layers, kept_heads, strict=True):
        attention, qkv, owner, out = _attention(layer)
        size = attention.attention_head_size
        index = (kept[:, None] * size + torch.arange(size, device=kept.device)).reshape(-1)
        for name in qkv:
            setattr(attention, name, _slice_linear(getattr(attention, name), index, dim=0))
        setattr(owner, out, _slice_linear(getattr(owner, out), index, dim=1))
        attention.num_attention_heads = keep
        attention.all_head_size = keep * size
    return [kept.tolist() for kept in kept_heads]


def apply_pruning(model: Any, pruning: PruningSpec | None) -> None:
    """Apply `pruning` to `model` in place (heads first, then FFN); None does nothing."""
    if pruning is None:
        return
    if pruning.heads is not None:
        prune_heads(model, pruning.heads)
    if pruning.ffn is not None:
        prune_ffn(model, pruning.ffn)
