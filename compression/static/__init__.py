"""A static query encoder in the teacher's space (model2vec-style): one vector per token of the teacher's tokenizer,
a text's vector the normalised sum of its tokens' rows. No transformer at query time.

- `config`: `StaticConfig`, the validated description of a build, and its allowed names;
- `encoder`: the folder format (`StaticModelConfig`, file names), `StaticTokenizer` and `StaticEncoder`, the
  torch-free `Encoder` (numpy and `tokenizers` only);
- `token_init`: the table's start from the teacher: `token_vectors` (a forward pass of [CLS] token [SEP] per token
  id) or `input_embeddings`;
- `train`: `train_static`, the fit of the table to the teacher's sentence vectors: a closed-form map of every row
  (`map_init`: ridge least squares, so unseen tokens move too), then EmbeddingBag + SparseAdam;
- `build`: `build_static_encoder` (init -> fit -> save) and `save_static`;
- `quantize`: per-row symmetric int8 (`quantize_rows`, `quantize_static`).

Choosing the training texts (never test queries) and computing the teacher's targets is the caller's job.
May import `semsearch_common` and `compression.*`; never `search`. torch and sentence-transformers are imported lazily,
inside
the functions that need them, so importing this package (and encoding with `StaticEncoder`) never loads torch.
"""

from compression.static.build import StaticReport, build_static_encoder, save_static
from compression.static.config import (
    INIT_MAPS,
    INIT_PRECISIONS,
    STATIC_LOSSES,
    STATIC_OPTIMIZERS,
    TOKEN_INITS,
    InitMap,
    StaticConfig,
    StaticLoss,
    StaticOptimizer,
    TokenInit,
)
from compression.static.encoder import (
    STATIC_CONFIG_FILE,
    STATIC_PRECISIONS,
    STATIC_REPORT_FILE,
    STATIC_SCALES_FILE,
    STATIC_TABLE_FILE,
    STATIC_TOKENIZER_FILE,
    StaticEncoder,
    StaticModelConfig,
    StaticPrecision,
    StaticTokenizer,
    pool_rows,
    sum_rows,
)
from compression.static.quantize import quantize_rows, quantize_static
from compression.static.token_init import initial_table, input_embeddings, load_teacher, token_vectors, vocabulary_size
from compression.static.train import StaticTrainReport, map_init, static_tokenizer, train_static

__all__ = [
    "INIT_MAPS",
    "INIT_PRECISIONS",
    "STATIC_CONFIG_FILE",
    "STATIC_LOSSES",
    "STATIC_OPTIMIZERS",
    "STATIC_PRECISIONS",
    "STATIC_REPORT_FILE",
    "STATIC_SCALES_FILE",
    "STATIC_TABLE_FILE",
    "STATIC_TOKENIZER_FILE",
    "TOKEN_INITS",
    "StaticConfig",
    "StaticEncoder",
    "StaticLoss",
    "StaticModelConfig",
    "StaticOptimizer",
    "StaticPrecision",
    "StaticReport",
    "StaticTokenizer",
    "StaticTrainReport",
    "InitMap",
    "TokenInit",
    "build_static_encoder",
    "initial_table",
    "input_embeddings",
    "map_init",
    "pool_rows",
    "quantize_rows",
    "quantize_static",
    "save_static",
    "static_tokenizer",
    "sum_rows",
    "load_teacher",
    "token_vectors",
    "vocabulary_size",
    "train_static",
]
