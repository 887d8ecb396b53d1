"""Distil the teacher's embedding space into a smaller student: build the student, cache teacher targets, train, save.

What lives where (each piece can be tested and timed on its own):

- `config`: `DistillConfig`, the declarative, validated description of a run (stored as `distill_config.json`);
  its defaults ARE the shipped recipe. Also the allowed names (losses, projection and batching modes) and
  `parse_student`.
- `losses`: `mse_loss`, `similarity_kl_loss`, `ranking_kl_loss`, `distillation_loss`: small pure torch functions.
- `targets`: `compute_teacher_targets`, the teacher's unit vectors for a list of texts, cached on disk and resumable
  (`semsearch_common.array_cache.RowCache`), and `texts_fingerprint`.
- `pruning`: `prune_ffn`, `prune_heads` (structured pruning by weight magnitude inside the kept layers) and
  `parse_pruning`, which reads a student spec's `@ffn=N,heads=H` suffix.
- `students`: `build_student`: `minilm` (all-MiniLM-L6-v2, optionally with a least-squares-initialised linear
  projection into the teacher's dim), `teacher-layers:N` (the teacher with N of its transformer layers kept, see
  `select_layers`), or a local folder.
- `batching`: the batch order: `length_grouped` (less padding) and `neighbour_order` (k-means neighbours).
- `train`: `train_student` (a plain seeded torch loop: AdamW, linear warmup then linear decay), the held-out
  figures, `save_student` (a sentence-transformers folder, published atomically) and `distill`: all of it in order.

Every function here takes plain lists of texts and never looks at a dataset: choosing the training texts (and
keeping evaluation queries out of them) is the caller's job; see `search.data.training_texts.training_texts`, which
uses corpus text and *train* queries only. Never pass test queries as training or projection-fitting texts.

May import `semsearch_common` and `compression.*`; never `search`. torch and sentence-transformers are imported lazily,
inside
the functions that need them.
"""

from compression.distill.batching import LENGTH_GROUP_BATCHES, cut_batches, length_grouped, neighbour_order
from compression.distill.config import (
    BATCHING_MODES,
    CONFIG_FILE,
    LOSS_NAMES,
    MINILM_LAYERS_PREFIX,
    PRECISION_NAMES,
    PROJECTION_MODES,
    REPORT_FILE,
    STUDENT_NAMES,
    TEACHER_LAYERS_PREFIX,
    BatchingMode,
    DistillConfig,
    LossName,
    Precision,
    ProjectionMode,
    PruningSpec,
    StudentKind,
    parse_pruning,
    parse_student,
)
from compression.distill.losses import distillation_loss, mse_loss, ranking_kl_loss, similarity_kl_loss
from compression.distill.pruning import apply_pruning, ffn_importance, head_importance, prune_ffn, prune_heads
from compression.distill.students import (
    PROJECTION_RIDGE,
    Student,
    attach_projection,
    build_student,
    fit_projection,
    pooled_embeddings,
    prune_layers,
    select_layers,
)
from compression.distill.targets import (
    TARGETS_CHUNK,
    TARGETS_DIR,
    TargetStore,
    TeacherEncoder,
    compute_teacher_targets,
    targets_cache_key,
    text_hash,
    texts_fingerprint,
    truncated,
)
from compression.distill.train import (
    DistillReport,
    distill,
    embed_for_training,
    mean_cosine,
    ranking_overlap,
    save_student,
    train_student,
)

__all__ = [
    "BATCHING_MODES",
    "CONFIG_FILE",
    "LENGTH_GROUP_BATCHES",
    "LOSS_NAMES",
    "MINILM_LAYERS_PREFIX",
    "PRECISION_NAMES",
    "PROJECTION_MODES",
    "PROJECTION_RIDGE",
    "REPORT_FILE",
    "STUDENT_NAMES",
    "TARGETS_CHUNK",
    "TARGETS_DIR",
    "TEACHER_LAYERS_PREFIX",
    "BatchingMode",
    "DistillConfig",
    "DistillReport",
    "LossName",
    "Precision",
    "ProjectionMode",
    "PruningSpec",
    "Student",
    "StudentKind",
    "TargetStore",
    "TeacherEncoder",
    "apply_pruning",
    "attach_projection",
    "build_student",
    "compute_teacher_targets",
    "cut_batches",
    "distill",
    "distillation_loss",
    "embed_for_training",
    "ffn_importance",
    "fit_projection",
    "head_importance",
    "length_grouped",
    "mean_cosine",
    "mse_loss",
    "neighbour_order",
    "parse_pruning",
    "parse_student",
    "pooled_embeddings",
    "prune_ffn",
    "prune_heads",
    "prune_layers",
    "ranking_kl_loss",
    "ranking_overlap",
    "save_student",
    "select_layers",
    "similarity_kl_loss",
    "targets_cache_key",
    "text_hash",
    "texts_fingerprint",
    "train_student",
    "truncated",
]
