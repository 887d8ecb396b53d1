#!/usr/bin/env bash
# The compact codecs on SciFact's real teacher vectors (5,183 x 768): SQ8 (what the compressed pipeline ships, under
# HNSW) against SQ4/SQ6/SQfp16, fast-scan PQ and 1-/4-bit RaBitQ, alone and rescored exactly (,RFlat) at several
# k_factor; recall@10 vs exact search, nDCG@10, latency and bytes per vector, through the product's `semsearch bench`.
# The corpus vectors come from the cache (the main job encodes them); the teacher encodes the 300 test queries.
set -euo pipefail
out=${OUT:-benchmarks/codecs}
semsearch bench --dataset scifact --encoder teacher \
  --index Flat --index SQ8 --index SQfp16 --index SQ6 --index SQ4 --index PQ96x4fs --index PQ96x4fs,RFlat \
  --index RaBitQ --index RaBitQ,RFlat --index RaBitQfs,RFlat --index RaBitQ4 --index RaBitQ4,RFlat \
  --index HNSW32,SQ8 --index HNSW32,SQ4 \
  --sweep k_factor=1,2,4,10 --sweep qb=4,8 --threads 1 --repeats 3 --budget-ms 150 --out "$out"
