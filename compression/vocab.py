"""Vocabulary pruning of an exported ONNX model folder: keep only the token-embedding rows a corpus can reach.

A 2-layer slice of all-mpnet-base-v2 spends 23 of its 38 int8 megabytes on the 30,527-row token-embedding table,
while SciFact's corpus produces only ~15k distinct token ids. `prune_vocabulary` keeps the rows of the given ids
(plus every special token), and puts a remap in the graph, in front of the embedding lookup: a new integer
initializer `vocab_remap` (old id -> new row; ids not kept -> the row of the unknown token) read by a
`Gather(vocab_remap, ids)`. The tokenizer is unchanged, so `OnnxEncoder` loads the pruned folder as any other;
texts whose tokens were all kept get the same vector as before, any other token is embedded as the unknown token.

Handled embedding lookups (found from the `input_ids` graph input, directly or through Casts):
`Gather(table, ids)` with `table` an initializer (fp32, or the uint8/int8 table `quantize_onnx`'s dynamic mode
gathers before a per-tensor DequantizeLinear) or a DequantizeLinear of one (the static QDQ form); and the fused
`EmbedLayerNormalization` / `QEmbedLayerNormalization` of onnxruntime's transformer optimizer (ids in input 0, table
in input 2). Position and token-type embeddings are untouched.

Only the rows change, so per-tensor quantization parameters stay valid and kept rows are bit-identical; a scale or
zero point per table row (axis 0) is pruned with the rows.

Measured on the untrained teacher-layers:0,11 student, dynamic int8 (38.2 MB: 23.4 MB table, 14.2 MB for the two
layers): the SciFact corpus and train queries produce 14,552 distinct ids (after truncation to 384 tokens), so the
pruned model is 26.2 MB, with vectors identical to the unpruned model's on corpus text. The remap costs 0.24 MB.
Under 22 MB takes at most ~9,300 rows: keeping the 9,000 most frequent ids (`token_counts(...).most_common(9000)`,
99.2% of the token occurrences) gives 21.9 MB, at mean cosine 0.994 to the unpruned model on corpus sentences (min
0.88) and 0.998 on whole documents (min 0.96). Out-of-domain text pays for each token mapped to the unknown token:
Python docstring sentences lost ~0.05 cosine per unseen token (2.8% of their tokens unseen, mean cosine 0.975).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders.onnx import (
    ONNX_CONFIG_FILE,
    ONNX_MODEL_FILE,
    TOKENIZER_FILE,
    OnnxModelConfig,
    TextTokenizer,
)
from compression.onnx_export import check_output_dir
from semsearch_common.atomic import atomic_path, copy_file_atomic, staged_folder, write_json_atomic

logger = logging.getLogger(__name__)

VOCAB_REPORT_FILE = "vocab_prune.json"
REMAP_NAME = "vocab_remap"
IDS_INPUT = "input_ids"
# op type -> (input slot of the token ids, input slot of the embedding table)
EMBEDDING_OPS = {
    "Gather": (1, 0),
    "EmbedLayerNormalization": (0, 2),
    "QEmbedLayerNormalization": (0, 2),
}
TOKENIZE_BATCH_SIZE = 256


@dataclass(frozen=True)
class PruneReport:
    """What `prune_vocabulary` did; written to `vocab_prune.json` in the pruned folder."""

    old_vocab: int
    kept: int
    unk_id: int
    special_ids: tuple[int, ...]
    table: str
    embedding_node: str
    bytes_before: int
    bytes_after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"special_ids": list(self.special_ids)}

    @classmethod
    def read(cls, folder: Path) -> PruneReport:
        data = json.loads((Path(folder) / VOCAB_REPORT_FILE).read_text(encoding="utf-8"))
        return cls(**{**data, "special_ids": tuple(data["special_ids"])})


def token_counts(tokenizer_dir: Path, texts: Iterable[str]) -> Counter[int]:
    """How often each token id occurs in `texts` (special tokens included, padding not): `most_common(n)` gives the
    ids to keep when the table must fit a size (see the module docstring).

    `tokenizer_dir` is an exported ONNX folder (then texts are tokenised exactly as `OnnxEncoder` does: prompt,
    lower-casing, truncation to `max_seq_length`) or any folder with a `tokenizer.json` (then untruncated).
    """
    folder = Path(tokenizer_dir)
    if (folder / ONNX_CONFIG_FILE).is_file():
        tokenizer = TextTokenizer(folder, OnnxModelConfig.read(folder))

        def encode(batch: Sequence[str]) -> list[int]:
            features = tokenizer(batch)
            return features["input_ids"][features["attention_mask"] > 0].tolist()
    else:
        from tokenizers import Tokenizer

        raw = Tokenizer.from_file(str(_tokenizer_file(folder)))
        raw.no_padding()  # a saved tokenizer.json may carry padding and truncation settings
        raw.no_truncation()

        def encode(batch: Sequence[str]) -> list[int]:
            return [token for encoding in raw.encode_batch(list(batch)) for token in encoding.ids]

    counts: Counter[int] = Counter()
    batch: list[str] = []
    for text in texts:
        batch.append(str(text))
        if len(batch) == TOKENIZE_BATCH_SIZE:
            counts.update(encode(batch))
            batch = []
    if batch:
        counts.update(encode(batch))
    return counts


def special_token_ids(tokenizer_dir: Path) -> tuple[tuple[int, ...], int | None]:
    """(ids of the special tokens, id of the token emitted for unknown text or None) of a folder's `tokenizer.json`:
    its special added tokens (CLS/SEP/PAD/UNK/MASK and the like) and its model's `unk_token` (WordPiece, BPE)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_tokenizer_file(Path(tokenizer_dir))))
    special = {int(i) for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    unk_token = getattr(tokenizer.model, "unk_token", None)
    unk_id = tokenizer.token_to_id(unk_token) if unk_token else None
    if unk_id is not None:
        special.add(int(unk_id))
    return tuple(sorted(special)), unk_id


def prune_vocabulary(onnx_dir: Path, keep_ids: Iterable[int], out_dir: Path, unk_id: int | None = None) -> PruneReport:
    """Copy the ONNX model folder `onnx_dir` (fp32 or int8) to `out_dir` with its token-embedding table cut to the
    rows of `keep_ids` plus the special tokens, and a remap in the graph sending every other id to the row of
    `unk_id` (default: the tokenizer's unknown token). Returns (and writes to `vocab_prune.json`) a `PruneReport`."""
    import onnx
    from onnx import numpy_helper

    onnx_dir = Path(onnx_dir).resolve()
    check_output_dir(onnx_dir, out_dir)
    config = OnnxModelConfig.read(onnx_dir)
    model = onnx.load(str(onnx_dir / ONNX_MODEL_FILE))
    graph = model.graph
    if any(i.name == REMAP_NAME for i in graph.initializer):
        raise ValueError(f"{onnx_dir} has a {REMAP_NAME!r} already: prune the unpruned folder instead")
    lookup = _find_embedding_lookup(graph)
    old_vocab = lookup.rows

    special, tokenizer_unk = special_token_ids(onnx_dir)
    unk = tokenizer_unk if unk_id is None else int(unk_id)
    if unk is None:
        raise ValueError(f"{onnx_dir}: the tokenizer names no unknown token: pass unk_id (0 <= id < {old_vocab})")
    keep = {int(i) for i in keep_ids} | set(special) | {unk, config.pad_token_id}
    bad = sorted(i for i in keep if not 0 <= i < old_vocab)
    if bad:
        raise ValueError(f"token ids out of range {bad[:5]}: the table has {old_vocab} rows (0 <= id < {old_vocab})")
    tokenizer_size = _tokenizer_size(onnx_dir)
    if tokenizer_size > old_vocab:
        raise ValueError(f"the tokenizer has {tokenizer_size} tokens but the embedding table only {old_vocab} rows")

    kept = np.array(sorted(keep), dtype=np.int64)
    new_row = np.full(old_vocab, -1, dtype=np.int64)
    new_row[kept] = np.arange(len(kept))
    remap = np.where(new_row < 0, new_row[unk], new_row)

    for name in lookup.row_tensors:
        initializer = _initializer(graph, name)
        pruned = numpy_helper.to_array(initializer)[kept]
        initializer.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned), name))
    graph.initializer.append(numpy_helper.from_array(remap.astype(lookup.ids_dtype), REMAP_NAME))
    remapped = f"{lookup.ids_tensor}_{REMAP_NAME}"
    remap_node = onnx.helper.make_node("Gather", [REMAP_NAME, lookup.ids_tensor], [remapped], name=REMAP_NAME, axis=0)
    lookup.node.input[lookup.ids_slot] = remapped
    nodes = list(graph.node)
    nodes.insert(nodes.index(lookup.node), remap_node)  # right before the lookup: the graph stays sorted
    del graph.node[:]
    graph.node.extend(nodes)

    with staged_folder(out_dir) as staging:
        with atomic_path(staging / ONNX_MODEL_FILE) as tmp:
            onnx.save(model, str(tmp))
        for path in sorted(onnx_dir.iterdir()):
            if path.is_file() and path.name not in (ONNX_MODEL_FILE, VOCAB_REPORT_FILE):
                copy_file_atomic(path, staging / path.name)
        report = PruneReport(
            old_vocab=old_vocab,
            kept=len(kept),
            unk_id=unk,
            special_ids=special,
            table=lookup.table,
            embedding_node=lookup.node.name,
            bytes_before=(onnx_dir / ONNX_MODEL_FILE).stat().st_size,
            bytes_after=(staging / ONNX_MODEL_FILE).stat().st_size,
        )
        write_json_atomic(staging / VOCAB_REPORT_FILE, report.to_dict())
    logger.info(
        "pruned the vocabulary of %s to %d of %d tokens at %s (%d -> %d bytes)",
        onnx_dir,
        report.kept,
        old_vocab,
        out_dir,
        report.bytes_before,
        report.bytes_after,
    )
    return report


@dataclass(frozen=True)
class _EmbeddingLookup:
    node: Any  # onnx.NodeProto
    ids_slot: int
    ids_tensor: str
    ids_dtype: type
    table: str
    rows: int
    row_tensors: tuple[str, ...]  # initializers indexed by token id: the table, and any per-row scale / zero point


def _find_embedding_lookup(graph: Any) -> _EmbeddingLookup:
    """The one node that looks token ids up in a 2-D initializer table, reached from `input_ids` through Casts."""
    import onnx

    if IDS_INPUT not in {i.name for i in graph.input}:
        raise ValueError(f"the graph has no {IDS_INPUT!r} input: inputs are {[i.name for i in graph.input]}")
    initializers = {i.name: i for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    input_type = next(i for i in graph.input if i.name == IDS_INPUT).type.tensor_type.elem_type

    found = []
    frontier = [(IDS_INPUT, input_type)]
    while frontier:
        tensor, elem_type = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                frontier.append((node.output[0], to))
                continue
            slots = EMBEDDING_OPS.get(node.op_type)
            if slots is None or node.input[slots[0]] != tensor or len(node.input) <= slots[1]:
                continue
            if node.op_type == "Gather" and any(a.name == "axis" and a.i != 0 for a in node.attribute):
                continue
            rows = _table_rows(node.input[slots[1]], initializers, producers)
            if rows is not None:
                found.append((node, slots[0], tensor, elem_type, *rows))
    if len(found) != 1:
        names = [entry[0].name for entry in found]
        raise ValueError(
            f"expected one token-embedding lookup fed by {IDS_INPUT!r} ({', '.join(EMBEDDING_OPS)} on a 2-D "
            f"initializer table), found {len(found)}: {names}"
        )
    node, slot, tensor, elem_type, table, n_rows, row_tensors = found[0]
    if elem_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        raise ValueError(f"token ids reach {node.name} as ONNX type {elem_type}: only int64 or int32 are handled")
    for name in {*row_tensors, node.input[EMBEDDING_OPS[node.op_type][1]]}:
        users = [user.name for user in consumers.get(name, [])]
        if len(users) != 1:
            raise ValueError(f"the embedding table {name} is shared by nodes {users}: cannot prune it")
    ids_dtype = np.int64 if elem_type == onnx.TensorProto.INT64 else np.int32
    return _EmbeddingLookup(node, slot, tensor, ids_dtype, table, n_rows, tuple(row_tensors))


def _table_rows(
    name: str, initializers: dict[str, Any], producers: dict[str, Any]
) -> tuple[str, int, list[str]] | None:
    """(table initializer, rows, initializers to prune) when `name` is a 2-D initializer, or a DequantizeLinear of one
    with a per-tensor, per-column or per-row scale (a per-row scale and zero point are pruned with the rows)."""
    if name in initializers:
        dims = list(initializers[name].dims)
        return (name, dims[0], [name]) if len(dims) == 2 else None
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
        return None
    dims = list(initializers[node.input[0]].dims)
    if len(dims) != 2 or any(a.name == "block_size" and a.i for a in node.attribute):
        return None
    scale = initializers.get(node.input[1])
    scale_dims = list(scale.dims) if scale is not None else None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % 2
    if scale_dims in ([], [1]) or (axis == 1 and scale_dims == [dims[1]]):
        return node.input[0], dims[0], [node.input[0]]
    if axis == 0 and scale_dims == [dims[0]]:
        return node.input[0], dims[0], [node.input[0], *(extra for extra in node.input[1:] if extra)]
    return None


def _initializer(graph: Any, name: str) -> Any:
    return next(i for i in graph.initializer if i.name == name)


def _tokenizer_file(folder: Path) -> Path:
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the folder must carry the model's tokenizer.json")
    return path


def _tokenizer_size(folder: Path) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(str(_tokenizer_file(folder))).get_vocab_size(with_added_tokens=True))
