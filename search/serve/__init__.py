"""Serving: several named pipelines side by side over HTTP (`semsearch serve`), and the web page on top.

The logic is the search core's (`search.pipeline_set`, `search.compare`, `search.evaluation.side_by_side`); this
package only puts it on HTTP:

- `app`: `create_app(ServerConfig)`, the FastAPI routes, thin layers over `PipelineSet`;
- `config`, `schemas`, `errors`: limits and security settings, the HTTP models, domain errors as status codes;
- `guard`, `admission`, `batcher`: who may call (library middlewares and `HTTPBearer`, plus the JSON-only and body
  size checks), bounded work, coalescing;
- `evaluation_job`, `live_metrics`: the background `/evaluation` job, Prometheus at `/metrics`;
- `web`: the page (`/`, `/bench`) from `static/` (plain HTML, CSS, JavaScript; no CDN, no build step), which only
  calls the JSON API; `bench_results`: the `semsearch bench` output behind `GET /bench/results`.

May import `semsearch_common`, `compression`, `indexes` and the search core, never `search.cli`, `search.bench` or
`search.jobs`; only `search.cli.serve` imports it.
"""
