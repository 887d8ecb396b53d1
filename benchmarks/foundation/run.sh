#!/usr/bin/env bash
# Reproduces benchmarks/foundation/*.json (issue 2). First run: ~51 min of teacher encoding on 2 cores, cached after.
set -euo pipefail
out=benchmarks/foundation
semsearch index --dataset scifact --encoder teacher --index Flat          --out runs/teacher-flat  --threads 2 --json
semsearch index --dataset scifact --encoder teacher --index "IVF256,PQ48" --out runs/teacher-ivfpq --threads 2 --json > $out/teacher_ivfpq48_index.json
semsearch index --dataset scifact --encoder minilm  --index Flat          --out runs/minilm-flat   --threads 2 --json
semsearch eval --dataset scifact --index-dir runs/teacher-flat  --threads 2 --json > $out/teacher_flat_eval.json
semsearch eval --dataset scifact --index-dir runs/teacher-ivfpq --threads 2 --json > $out/teacher_ivfpq48_eval.json
semsearch eval --dataset scifact --index-dir runs/minilm-flat --teacher-index runs/teacher-flat --threads 2 --json > $out/minilm_flat_eval.json
