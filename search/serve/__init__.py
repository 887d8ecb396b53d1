"""Serving: several named pipelines side by side over HTTP (`semsearch serve`).

- `pipelines`: `PipelineSet`, the logic of the server: search, batch search, compare against the reference pipeline,
  describe, and the cached evaluation summary; also parsing `--pipeline NAME=DIR`;
- `app`: `create_app(ServerConfig)`, the FastAPI routes, thin layers over `PipelineSet`;
- `live_metrics`: Prometheus latency histograms and request/error counters, one registry per app.

May import `common`, `compression`, `indexes` and the rest of `search` (pipeline, data, evaluation); only
`search.cli` imports it.
"""
