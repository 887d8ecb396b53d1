"""Shared mechanisms, one home each, used by every other package (and importing none of them).

- `atomic`: atomic file writes and the staged-folder swap;
- `cache`: where caches live and the one cache-key function;
- `array_cache`: the resumable, chunked, checkpointed cache of computed vectors (corpus embeddings, teacher targets);
- `progress`: the one progress-bar factory;
- `timing`: warm-up + one-call-at-a-time timing loops and percentiles;
- `threads`: thread limits for BLAS and OpenMP (threadpoolctl), set in one place;
- `machine`: machine facts and memory figures (psutil);
- `tables`: the one Markdown table writer;
- `errors`: `MissingDependencyError`, a missing package named with its install command.

Stdlib, numpy, rich, psutil and threadpoolctl only: never `compression`, `indexes` or `search`.
"""
