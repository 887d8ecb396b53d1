#!/usr/bin/env bash
# Where a query's milliseconds go between the ONNX encode and the final hits: the latency study
# (benchmarks/latency/latency_study.py, run as `python -m latency_study` with this folder on PYTHONPATH, against the
# installed package).
# Every configuration is interleaved with the others, block by block, but absolute numbers on a shared machine are
# noisy: results.md lists the load average beside each row. Exact commands of the results in this folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="benchmarks/latency${PYTHONPATH:+:$PYTHONPATH}"
# int8 (dynamic) MiniLM, as `semsearch run` caches it (search.jobs.students.base_model_int8("minilm", "dynamic", ...))
MODEL=${MODEL:-$HOME/.cache/semsearch/students/base-5347a58f176bf283-onnx/int8-dynamic}
export SEMSEARCH_DATA=${SEMSEARCH_DATA:-/work/shared/datasets}

# 384-d, the compressed pipeline's width; SciFact's 5,183 documents; every configuration, plus the batch checks
# (512 corpus texts encoded in batches of 32, 1000 queries searched at once)
python -m latency_study --model-dir "$MODEL" --dataset scifact --factories "Flat;SQ8" --queries 300 -k 100 \
  --spinning on,off --faiss-threads default,1 --pipelines 1,4 --callers main,pool --pool-threads 40 \
  --batch-texts 512 --batch-queries 1000 --batch-repeats 2 --out benchmarks/latency/d384

# 768-d (the teacher's width: asymmetric pipelines), the encoder's vector tiled to 768; no batch encode
python -m latency_study --model-dir "$MODEL" --dataset scifact --factories "Flat;SQ8" --queries 300 -k 100 \
  --dim 768 --spinning on,off --faiss-threads default,1 --pipelines 1,4 --callers main,pool --pool-threads 40 \
  --batch-texts 0 --batch-queries 1000 --batch-repeats 2 --out benchmarks/latency/d768
