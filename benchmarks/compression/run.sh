#!/usr/bin/env bash
# Reproduces benchmarks/compression/*.json (issue 3) on a 2-core machine. Every step is cached after its first run.
set -euo pipefail
out=benchmarks/compression
# 1. the main job: teacher index, distilled student (the shipped recipe), int8 ONNX, compressed index, side by side
semsearch run --dataset scifact --json > $out/main_job.json
student=$(python -c "import json; print(json.load(open('$out/main_job.json'))['student_dir'])")
int8=$(python -c "import json; print(json.load(open('$out/main_job.json'))['int8_dir'])")
base=$(python -c "import json; print(json.load(open('$out/main_job.json'))['doc_int8_dir'])")
# 2. teacher, MiniLM, the student (fp32 / int8, symmetric, document tower, asymmetric) in one run -> summary.json
semsearch bench-compression --student "$student" --student-int8 "$int8" --doc-tower "$base" --out $out --threads 2 --json
# 3. dynamic vs static int8 of the same student: size, latency and the train-split quality gate
semsearch quantize --model "$student" --out runs/student-dynamic --mode dynamic --json > $out/quantize_dynamic.json
semsearch quantize --model "$student" --out runs/student-static --mode static --json > $out/quantize_static.json
