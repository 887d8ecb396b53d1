"""Load and fault harness for `semsearch serve`: bounded, loopback only, stops by itself.

- `server`: starts `semsearch serve` from a chosen source tree, probes /health, restarts a wedged server; parses the
  NAME=DIR pipelines it serves;
- `load`: closed-loop clients (1/8/32/128) posting `/search` for a fixed time: req/s, p50/p95/p99, errors, 503s;
- `hostile`: oversized, over-limit and malformed requests, each with its status, latency and the server's RSS growth;
- `storm`: one `POST /evaluation`, then 50 concurrent `GET /evaluation` and polling until the evaluation has finished,
  while `/health` is polled: /health latency;
- `schema`: schemathesis with every check against the server's /openapi.json;
- `rss`: the server's resident memory sampled every 100 ms (psutil);
- `report`: results.json and table.md, and the before/after comparison.

From the repository root, `PYTHONPATH=benchmarks/reliability python -m reliability_harness run --src TREE
--pipeline NAME=DIR ...` starts a server and drives it; `benchmarks/reliability/run.sh` wraps it with the SciFact
defaults.
"""
