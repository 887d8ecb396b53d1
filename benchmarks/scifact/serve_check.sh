#!/usr/bin/env bash
# Starts the server on the main job's two pipelines and records /pipelines, /compare, /metrics and a Prometheus
# excerpt under benchmarks/scifact/ (issue 4, must-show 2).
set -euo pipefail
out=benchmarks/scifact
semsearch serve --pipeline teacher=runs/scifact/teacher --pipeline compressed=runs/scifact/compressed \
  --threads 2 --port 8765 > runs/serve.log 2>&1 &
pid=$!
trap 'kill $pid' EXIT
for _ in $(seq 120); do curl -sf localhost:8765/health > /dev/null && break; sleep 1; done
curl -s localhost:8765/pipelines > $out/server_pipelines.json
curl -s -XPOST localhost:8765/compare -d '{"query":"Vitamin D deficiency increases the risk of bone fractures","k":10}' > $out/server_compare.json
curl -s -XPOST localhost:8765/search -d '{"query":"x","k":5,"pipeline":"nope"}' > $out/server_unknown_pipeline.json
curl -s localhost:8765/metrics > $out/server_metrics.json
curl -s localhost:8765/metrics > /dev/null   # second call: served from the cache
curl -s localhost:8765/metrics/prometheus | grep -E '^semsearch_(stage_seconds_(count|sum)|requests_total)' > $out/server_prometheus.txt
