#!/usr/bin/env bash
# Reproduces benchmarks/scifact/ (issue 4): every encoder x index x search parameter on SciFact test, Pareto plots.
# Needs the main job's artefacts (benchmarks/compression/run.sh step 1, cached after its first run).
# MAIN and OUT override the main job's output it reads and where results go.
set -euo pipefail
main=${MAIN:-benchmarks/compression/main_job.json}
out=${OUT:-benchmarks/scifact}
student=$(python -c "import json; print(json.load(open('$main'))['student_dir'])")
int8=$(python -c "import json; print(json.load(open('$main'))['int8_dir'])")
base=$(python -c "import json; print(json.load(open('$main'))['doc_int8_dir'])")
# student / student-int8: distilled queries over the base student's documents (the shipped compressed pipeline);
# minilm-int8: the naive baseline (off-the-shelf MiniLM, int8, both sides)
semsearch bench --dataset scifact \
  --encoder teacher --encoder "student=$student@minilm" --encoder "student-int8=$int8@$base^student" \
  --encoder "minilm-int8=$base" \
  --index Flat --index HNSW32 --index IVF256,Flat --index IVF256,PQ48 --index OPQ48,IVF256,PQ48 \
  --index IVF256,PQ48,RFlat --index SQ8 --index PQ96 \
  --sweep nprobe=1,2,4,8,16,32,64 --sweep efSearch=16,32,64,128,256 --sweep k_factor=1,2,4,8 \
  --budget-ms 5 --threads 2 --repeats 3 --out "$out"
