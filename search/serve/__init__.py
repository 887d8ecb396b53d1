"""Serving: several named pipelines side by side over HTTP (`semsearch serve`), and the web page on top.

- `pipelines`: `PipelineSet`, the logic of the server: search, batch search, compare against the reference pipeline
  (overlap, each hit's rank in the reference's top-k, speed-up), describe, and the cached evaluation summary; also
  parsing `--pipeline NAME=DIR` (`semsearch search --compare` uses it too);
- `app`: `create_app(ServerConfig)`, the FastAPI routes, thin layers over `PipelineSet`;
- `config`, `schemas`, `guard`, `admission`, `batcher`, `metrics_job`, `live_metrics`: limits and security, the HTTP
  models, who may call, bounded work, coalescing, the background /metrics job, Prometheus;
- `web`: the page (`/`, `/bench`) from `static/` (plain HTML, CSS, JavaScript; no CDN, no build step), which only
  calls the JSON API; `bench_results`: the `semsearch bench` output behind `GET /bench/results`.

May import `common`, `compression`, `indexes` and the rest of `search` (pipeline, data, evaluation); only
`search.cli` imports it.
"""
