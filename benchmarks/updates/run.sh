#!/usr/bin/env bash
# A living index under load and under faults, on SciFact with int8 MiniLM (the main job's naive int8 pipeline: an
# encoder fast enough on 2 cores to encode 10,000 documents in minutes; the teacher encodes ~2 documents/s).
# Needs the main job's index directories (`semsearch run --dataset scifact`): the encoder is taken from
# runs/scifact/minilm-int8 and SciFact's embeddings come from the cache.
set -euo pipefail
out=${OUT:-benchmarks/updates}
# 10,000 upserts (half new ids, half replacing SciFact documents) and 1,000 deletes sent to `semsearch serve --writes`
# over four pipelines (Flat, HNSW32, RaBitQfs x8 rescored, IVF64,RaBitQfs) while 8 clients search; then every
# pipeline against a from-scratch build of the final corpus
PYTHONPATH=. python benchmarks/updates/updates.py --encoder-dir runs/scifact/minilm-int8 --upserts 10000 \
  --deletes 1000 --clients 8 --think-ms 100 --idle-seconds 60 --out "$out"
# the server killed with SIGKILL at a random moment of each of 20 write batches (50 upserts + 10 deletes each)
PYTHONPATH=. python benchmarks/updates/fault.py --encoder-dir runs/scifact/minilm-int8 --cycles 20 --out "$out"
