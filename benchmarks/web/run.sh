#!/usr/bin/env bash
# The web page on the real SciFact pipelines.
# 1. `semsearch bench` of the pipelines the main job ships (the /bench view draws its results.json), and
# 2. screenshots of the real page (teacher, the compressed pipeline, naive int8 MiniLM) under docs/screenshots/.
# Run from the repository root after the main job (README command 1; its artefacts are cached), with Debian's
# chromium and chromium-driver installed. STEPS picks a subset of "bench shots". The screenshot tool is
# web_screenshots.py in this folder, run as `python -m web_screenshots`; it starts the server with the reliability
# harness (benchmarks/reliability/reliability_harness/server.py), so both folders go on PYTHONPATH.
set -euo pipefail
OUT=${OUT:-benchmarks/web/bench}
STEPS=${STEPS:-bench shots}
job=${MAIN:-benchmarks/students/main_job.json}
student() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['students'][sys.argv[2]]['int8_dir'])" "$job" "$1"; }
slice=$(student "teacher-layers:0,11")
static=$(student static)
minilm=$(python -c "import json; print(json.load(open('runs/scifact/minilm-int8/meta.json'))['encoder']['path'])")

if [[ " $STEPS " == *" bench "* ]]; then
  # compressed / static-int8: students in the teacher's space, searching the teacher's document vectors;
  # minilm-int8: the naive baseline (off-the-shelf MiniLM, int8, both sides)
  semsearch bench --dataset scifact \
    --encoder teacher --encoder "compressed=$slice@teacher" --encoder "static-int8=$static@teacher" \
    --encoder "minilm-int8=$minilm" \
    --index Flat --index HNSW32 --index HNSW32,SQ8 --index IVF256,Flat --index IVF256,PQ48,RFlat --index SQ8 \
    --index PQ96 \
    --sweep nprobe=1,4,16,64 --sweep efSearch=16,32,64,128 --sweep k_factor=1,4 \
    --budget-ms 5 --threads 2 --repeats 3 --out "$OUT"
fi

if [[ " $STEPS " == *" shots "* ]]; then
  PYTHONPATH="benchmarks/web:benchmarks/reliability${PYTHONPATH:+:$PYTHONPATH}" \
    python -m web_screenshots --out docs/screenshots --bench-dir "$OUT" \
    --pipeline teacher=runs/scifact/teacher --pipeline compressed=runs/scifact/compressed \
    --pipeline minilm-int8=runs/scifact/minilm-int8
fi
