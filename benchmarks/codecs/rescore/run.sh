#!/usr/bin/env bash
# Rescoring from the vector file (`oversample`, fp16 rows) against ,RFlat's re-ranking from fp32 vectors in RAM
# (`k_factor`), on SciFact's real teacher vectors (5,183 x 768) with the teacher's own queries, through the product's
# `semsearch bench` (each query alone, best of 3, one thread). The bench reads the fp16 rows from RAM: what a vector
# file gives once its pages are cached; its cold-page cost at 1M vectors is in benchmarks/scale/.
set -euo pipefail
out=${OUT:-benchmarks/codecs/rescore}
semsearch bench --dataset scifact --encoder teacher \
  --index RaBitQfs --index RaBitQfs,RFlat --index PQ96x4fs --index PQ96x4fs,RFlat --index SQ8 --index SQ8,RFlat \
  --sweep oversample=1,2,4,10 --sweep k_factor=1,2,4,10 --threads 1 --repeats 3 --budget-ms 150 --out "$out"
