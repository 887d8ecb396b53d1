#!/usr/bin/env bash
# The vector side at scale, on 768-d vectors grown from SciFact's real teacher (all-mpnet-base-v2) embeddings:
# compact codes (1-bit RaBitQ fast-scan, 4-bit fast-scan PQ) in IVF with the full vectors on disk for rescoring,
# against the HNSW32,SQ8 the compressed pipeline shipped before; each index also saved as an index directory and
# measured in a fresh process as `semsearch serve` opens it (resident bytes per vector, warm and cold-page latency).
# Then the document side: ids.json + docs.jsonl (the previous format) against the SQLite document store at 1M.
set -euo pipefail
out=${OUT:-benchmarks/scale}
dataset=${DATASET:-../shared/datasets/scifact}
# the teacher's SciFact corpus vectors, from the embedding cache (`semsearch index` fills it; instant when cached)
semsearch index --dataset "$dataset" --encoder teacher --index Flat --out runs/scale-source --vectors none --json >/dev/null
key=$(python -c "import json; print(json.load(open('runs/scale-source/meta.json'))['embedding_key'])")
vectors="${SEMSEARCH_CACHE:-$HOME/.cache/semsearch}/embeddings/$key.npy"
semsearch bench-scale --vectors "$vectors" --size 100000 --size 1000000 \
  --index "IVF{nlist},RaBitQfs" --index "IVF{nlist}_HNSW32,RaBitQfs" --index "IVF{nlist},PQ192x4fsr" \
  --index "HNSW32,SQ8" --skip "HNSW32,SQ8@1000000" \
  --params nprobe=16 --train-sample 160000 --threads 2 --repeats 2 \
  --index-dirs --warm-queries 1000 --cold-queries 200 --out "$out"
python benchmarks/scale/doc_memory.py --dataset "$dataset" --n 1000000 --out "$out"
# The same 1-bit codes re-ranked by ,RFlat from fp32 vectors held in RAM (k_factor 4), served the same way: what
# keeping the full vectors on disk instead saves, and costs.
semsearch bench-scale --vectors "$vectors" --size 1000000 --index "IVF{nlist},RaBitQfs,RFlat" \
  --params nprobe=16 --train-sample 160000 --threads 2 --repeats 2 \
  --index-dirs --warm-queries 1000 --cold-queries 200 --out "$out/rflat"
# resident memory and disk at 10M and 100M, projected from the measured per-vector figures
python benchmarks/scale/projection.py --out "$out"
