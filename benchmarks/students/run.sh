#!/usr/bin/env bash
# Query encoders in the teacher's space: pseudo-queries, training throughput, recipe attempts (validation only), the
# main job on SciFact, the main job on a SciFact folder without train qrels, and cold timings.
# Run from the repository root with the project installed (README, command 1). Overrides: OUT, STEPS, BEFORE (a
# commit whose training code is the "before" row), SPEED (scratch folder for the fixed texts).
set -euo pipefail
OUT=${OUT:-benchmarks/students}
STEPS=${STEPS:-pseudo speed attempts capacity main noqrels cold}   # any subset, in this order
BEFORE=${BEFORE:-6af0c4a}
SPEED=${SPEED:-runs/train-speed}
mkdir -p "$OUT" "$SPEED"
step() { [[ " $STEPS " == *" $1 "* ]]; }
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. pseudo-queries: how many SciFact gives (200,000 asked), per-kind counts, length match with its TRAIN queries
if step pseudo; then python "$HERE/pseudo_stats.py" --dataset scifact --count 200000 --out "$OUT/pseudo"; fi

# 2. training throughput before/after on the same fixed texts (1,024 corpus texts + 2,048 pseudo-queries, 1 epoch,
#    the shipped loss mse+rank, 2 threads): the "before" row runs the training code of $BEFORE from a git worktree
if step speed; then
  [ -f "$SPEED/texts.json" ] || python "$HERE/train_speed.py" prepare --out "$SPEED"
  [ -d "$SPEED/before-tree" ] || git worktree add --detach "$SPEED/before-tree" "$BEFORE"
  PYTHONPATH="$SPEED/before-tree" python "$HERE/train_speed.py" measure --texts "$SPEED/texts.json" --label before
  python "$HERE/train_speed.py" measure --texts "$SPEED/texts.json" --label after
  python "$HERE/train_speed.py" measure --texts "$SPEED/texts.json" --label "after, batch 64" --set batch_size=64
  cp "$SPEED/results.jsonl" "$OUT/train_speed.jsonl"; : > "$SPEED/results.jsonl"
fi

# 3. recipe attempts at one small budget (the same fixed texts, 1 epoch), judged on held-out corpus texts,
#    pseudo-queries and SciFact TRAIN queries (never trained on here; test queries are never read): curricula and
#    dropout against the shipped recipe
if step attempts; then
  m() { python "$HERE/train_speed.py" measure --texts "$SPEED/texts.json" "$@"; }
  m --label "after"
  m --label "corpus-first" --set curriculum=corpus-first
  m --label "queries-first" --set curriculum=queries-first
  m --label "dropout on" --set dropout=true
  cp "$SPEED/results.jsonl" "$OUT/attempts.jsonl"; : > "$SPEED/results.jsonl"
fi

# 3b. loss and capacity at the same budget, with each trained model's single-text encode time (torch fp32): the
#     shipped recipe, MSE alone (on unit vectors a cosine loss is MSE / 2, so this is also the cosine row), and a
#     4-layer slice whole and with its FFNs pruned to 1,536 neurons
if step capacity; then
  m() { python "$HERE/train_speed.py" measure --texts "$SPEED/texts.json" "$@"; }
  m --label "slice 0,11, mse+rank (shipped)"
  m --label "slice 0,11, mse (= cosine)" --set loss=mse
  m --label "slice 0,1,10,11" --set student=teacher-layers:0,1,10,11
  m --label "slice 0,1,10,11, ffn 1536" --set student=teacher-layers:0,1,10,11@ffn=1536
  cp "$SPEED/results.jsonl" "$OUT/capacity.jsonl"; : > "$SPEED/results.jsonl"
  python "$HERE/train_speed.py" table "$OUT/capacity.jsonl" | tee "$OUT/capacity.md"
fi

# 4. the main job on SciFact: every candidate trained on corpus text + pseudo-queries, the pick on 1,500 held-out
#    query-like texts, every pipeline on the test split
if step main; then
  semsearch run --dataset scifact --json > "$OUT/main_job.json"
  semsearch run --dataset scifact | grep -v "━" | tee "$OUT/main_job.txt"   # all cache hits now: the table for people
fi

# 5. the same command on a BEIR folder without train qrels (SciFact's corpus, queries and test qrels only): the
#    students learn from corpus text and pseudo-queries alone (the corpus vectors are shared with step 4's cache)
if step noqrels; then
  NOQ=runs/scifact-no-train-qrels; mkdir -p "$NOQ/qrels"
  for f in corpus.jsonl queries.jsonl qrels/test.tsv; do ln -sf "$(realpath ../shared/datasets/scifact/$f)" "$NOQ/$f"; done
  semsearch run --dataset "$NOQ" --json > "$OUT/noqrels.json"
  semsearch run --dataset "$NOQ" | grep -v "━" | tee "$OUT/noqrels.txt"   # all cache hits now: the table for people
fi

# 6. cold timings from an empty cache (models are unpacked again too), the log beside the table
if step cold; then
  cold=$(mktemp -d)
  /usr/bin/time -f "%e s wall, empty cache, --quick" -a -o "$OUT/cold_quick.txt" env SEMSEARCH_CACHE="$cold" \
    semsearch run --dataset scifact --quick --runs-dir "$cold/runs" > "$OUT/cold_quick.txt" 2> "$cold.log"
  cp "$cold.log" "$OUT/cold_quick.log"; rm -f "$cold.log"
  rm -rf "$cold"
fi
