#!/usr/bin/env bash
# Reproduces benchmarks/compression/*.json (issue 3) on a 2-core machine. Every step is cached after its first run.
# OUT, RUNS and RUN_FLAGS override where results and models go and what the main job adds (smoke test:
# OUT=/tmp/x RUNS=/tmp/x/runs RUN_FLAGS=--quick).
set -euo pipefail
out=${OUT:-benchmarks/compression}
mkdir -p "$out"
# 1. the main job: teacher index, distilled student (the shipped recipe), int8 ONNX, compressed index, side by side
semsearch run --dataset scifact ${RUN_FLAGS:-} --json > $out/main_job.json
student=$(python -c "import json; print(json.load(open('$out/main_job.json'))['student_dir'])")
int8=$(python -c "import json; print(json.load(open('$out/main_job.json'))['int8_dir'])")
base=$(python -c "import json; print(json.load(open('$out/main_job.json'))['doc_int8_dir'])")
# 2. teacher, MiniLM, the student (fp32 / int8, symmetric, document tower, asymmetric) in one run -> summary.json
semsearch bench-compression --student-fp32 "$student" --student-int8 "$int8" --doc-tower "$base" --out "$out" --threads 2 \
  --json
# 3. dynamic vs static int8 of the same student: size, latency and the train-split quality gate
semsearch quantize --model "$student" --out ${RUNS:-runs}/student-dynamic --mode dynamic --json > $out/quantize_dynamic.json
semsearch quantize --model "$student" --out ${RUNS:-runs}/student-static --mode static --json > $out/quantize_static.json
