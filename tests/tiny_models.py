"""Tiny, seeded, randomly initialised sentence-transformers models for fast tests (no hub, no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

from compression.models import resolve_model

TINY_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def build_tiny_sentence_model(
    out_dir: Path,
    seed: int = 0,
    dense_dim: int | None = None,
    hidden_size: int = 32,
    max_seq_length: int = 128,
    num_layers: int = 2,
) -> Path:
    """Save a 2-layer BERT (hidden 32, 2 heads, intermediate 64) as Transformer -> mean Pooling -> [Dense] ->
    Normalize at `out_dir`, with the bundled MiniLM tokenizer files; return `out_dir`.

    `dense_dim` adds a Dense projection hidden_size -> dense_dim (tanh), to exercise the projection path.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    minilm = resolve_model("minilm").path
    vocab_size = sum(1 for _ in (minilm / "vocab.txt").open(encoding="utf-8"))
    hf_dir = out_dir.parent / f"{out_dir.name}-hf"
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(hf_dir)
    for name in TINY_TOKENIZER_FILES:
        shutil.copyfile(minilm / name, hf_dir / name)

    modules = [Transformer(str(hf_dir), max_seq_length=max_seq_length), Pooling(hidden_size, pooling_mode="mean")]
    if dense_dim is not None:
        modules.append(Dense(hidden_size, dense_dim, activation_function=torch.nn.Tanh()))
    modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out_dir))
    shutil.rmtree(hf_dir)
    return out_dir
