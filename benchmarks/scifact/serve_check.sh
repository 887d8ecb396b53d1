#!/usr/bin/env bash
# Starts the server on the main job's two pipelines and records /pipelines, /compare, /evaluation and a Prometheus
# excerpt (/metrics) under benchmarks/scifact/.
set -euo pipefail
out=benchmarks/scifact
json=(-H 'Content-Type: application/json')
semsearch serve --pipeline teacher=runs/scifact/teacher --pipeline compressed=runs/scifact/compressed \
  --threads 2 --port 8765 > runs/serve.log 2>&1 &
pid=$!
trap 'kill $pid' EXIT
for _ in $(seq 120); do curl -sf localhost:8765/ready > /dev/null && break; sleep 1; done
curl -s localhost:8765/pipelines > $out/server_pipelines.json
curl -s -XPOST "${json[@]}" localhost:8765/compare -d '{"query":"Vitamin D deficiency increases the risk of bone fractures","k":10}' > $out/server_compare.json
curl -s -XPOST "${json[@]}" localhost:8765/search -d '{"query":"x","k":5,"pipeline":"nope"}' > $out/server_unknown_pipeline.json
curl -s -XPOST "${json[@]}" localhost:8765/evaluation > /dev/null   # starts the evaluation in the background
while [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:8765/evaluation)" = 202 ]; do sleep 5; done
curl -s localhost:8765/evaluation > $out/server_metrics.json
curl -s localhost:8765/metrics | grep -E '^semsearch_(stage_seconds_(count|sum)|requests_total)' > $out/server_prometheus.txt
