#!/usr/bin/env bash
# Metadata filters at 1%, 10% and 50% selectivity on HNSW and IVF indexes of SciFact's teacher vectors: recall@10
# against exact filtered search, and latency (one query at a time, one thread). Needs the teacher's SciFact vectors
# in the embedding cache (`semsearch run --dataset scifact`); queries are SciFact's train queries.
set -euo pipefail
PYTHONPATH=. python benchmarks/filters/filters.py --out "${OUT:-benchmarks/filters}"
