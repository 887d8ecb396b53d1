"""Distributed corpus encoding on Ray: the same encoders and the same cache as the local path, run by actors.

- `engine`: `require_ray` (the lazy import of the optional `ray` extra), `RaySpec` (address, encoder actors, threads
  per actor, batch size, restart and retry budgets), `ray_session` (reuses or starts Ray, dashboard off, and shuts down
  only what it started), `ray_status` (the nodes' CPUs);
- `encode`: `encode_corpus_ray`, which fills the very cache entry `search.embeddings.encode_corpus` reads and writes
  (one key, one format: a corpus encoded on Ray is a cache hit for a local run and vice versa), `EncoderActor`
  (`compression.encoders.load_encoder` inside a Ray actor: no second encoder implementation);
- `build`: an index directory built on Ray (the corpus encoded by `encode`, the index filled per shard).

`ray` is imported inside functions only, so importing this package never needs it. May import `semsearch_common`,
`compression`, `indexes`, `search.data`, `search.embeddings` and `search.pipeline`; never the CLI, server, jobs or
benchmarks.
"""
