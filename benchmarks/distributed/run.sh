#!/usr/bin/env bash
# The Ray engine on this machine (1 and 2 workers), from the repository root with the project installed with the ray
# extra (pip install -e '.[models,dev,ray]') and the main job's artefacts cached (README command 1). The tool is
# distributed_bench.py in this folder, run as `python -m distributed_bench` with this folder on PYTHONPATH.
set -euo pipefail
export PYTHONPATH="benchmarks/distributed${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/distributed}
WORK=${WORK:-$(mktemp -d)}
# 1. encoding SciFact with int8 MiniLM (ONNX Runtime; the teacher would take ~51 min a run) locally and on Ray;
# 2. IVF64,PQ48 on SciFact's teacher vectors and IVF1024,PQ48 on 1 M vectors grown from them, built locally and from
#    4 shards on Ray, recall@10 of each Ray build vs the local one; 3. each merged index served memory-mapped.
minilm_int8=$(python -c "import json; print(json.load(open('runs/scifact/minilm-int8/meta.json'))['encoder']['path'])")
python -m distributed_bench --out "$OUT" --work "$WORK" --encoder "$minilm_int8" --steps encode,build,mmap \
  --synthetic 1000000 --factory "IVF1024,PQ48" --scifact-factory "IVF64,PQ48" --shards 4 --nprobe 16
# 4. the CLI end to end: SciFact indexed on Ray (2 workers, 4 shards, IVF on disk), served memory-mapped
semsearch index --dataset scifact --encoder "$minilm_int8" --index "IVF64,PQ48" --engine ray --workers 2 --shards 4 \
  --out "$WORK/scifact-ray" --json > "$OUT/cli_index.json"
semsearch index --dataset scifact --encoder "$minilm_int8" --index "IVF64,PQ48" --out "$WORK/scifact-local" --json \
  > "$OUT/cli_index_local.json"
