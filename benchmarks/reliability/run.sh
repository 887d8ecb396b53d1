#!/usr/bin/env bash
# Load and fault harness for `semsearch serve`: loopback only, stops by itself, bounded time (see README.md). The
# harness is the package reliability_harness/ in this folder, run as `python -m reliability_harness` with this folder
# on PYTHONPATH.
#
#   benchmarks/reliability/run.sh                                     # this tree          -> results/current/
#   SRC=/tmp/previous LABEL=previous benchmarks/reliability/run.sh    # another source tree -> results/previous/
#   RESULTS=/tmp/relsmoke DURATION=3 LEVELS="1 8" EXAMPLES=10 benchmarks/reliability/run.sh   # a short smoke run
#
# When results/previous and results/current both exist it also writes results/compare.md (previous vs current).
#
# Needs the SciFact index directories of the main job (`semsearch run --dataset scifact` writes runs/scifact/teacher,
# runs/scifact/compressed and runs/scifact/student-static) and the dataset (its train queries are the load). The
# server runs from $SRC (first on PYTHONPATH) with this tree's venv; the harness runs from this tree.
#
# Env: SRC, LABEL, TEACHER, COMPRESSED, STATIC, DATASET, DURATION (s measured per load level, default 10), WARMUP (s, 2),
# LEVELS (concurrent clients, "1 8 32 128"), PORT (8799), EXAMPLES (schemathesis cases per operation, 60; 0 skips it;
# needs `pip install -e '.[bench]'`), CASE_TIMEOUT (s per hostile request, 10), STORM_TIMEOUT (s, 90),
# PHASES ("latency load hostile storm schema"), SERVER_ARGS (extra `semsearch serve` flags, e.g. "--limit max_queue=64"),
# PYTHON (the venv's interpreter), NICE (niceness of server and harness, 0), RESULTS (folder of the label folders).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="$(cd "${SRC:-$ROOT}" && pwd)"
LABEL="${LABEL:-current}"
TEACHER="${TEACHER:-$ROOT/runs/scifact/teacher}"
COMPRESSED="${COMPRESSED:-$ROOT/runs/scifact/compressed}"
STATIC="${STATIC:-$ROOT/runs/scifact/student-static}"
DATASET="${DATASET:-$ROOT/../shared/datasets/scifact}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
LEVELS="${LEVELS:-1 8 32 128}"
PORT="${PORT:-8799}"
EXAMPLES="${EXAMPLES:-60}"
CASE_TIMEOUT="${CASE_TIMEOUT:-10}"
STORM_TIMEOUT="${STORM_TIMEOUT:-90}"
PHASES="${PHASES:-latency load hostile storm schema}"
SERVER_ARGS="${SERVER_ARGS:-}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
NICE="${NICE:-0}"
RESULTS="${RESULTS:-$ROOT/benchmarks/reliability/results}"
OUT="$RESULTS/$LABEL"

fail() { echo "error: $*" >&2; exit 2; }
[ -x "$PYTHON" ] || fail "no Python at $PYTHON: create the venv (see README.md) or set PYTHON"
for dir in "$TEACHER" "$COMPRESSED" "$STATIC"; do
  [ -f "$dir/meta.json" ] || fail "no index directory at $dir: build the SciFact indexes with \`semsearch run --dataset scifact\` (or set TEACHER, COMPRESSED and STATIC)"
done
[ -f "$DATASET/queries.jsonl" ] || fail "no dataset at $DATASET (queries.jsonl, qrels/): set DATASET to the SciFact BEIR folder"
[ -d "$SRC/search" ] || fail "$SRC is not a semsearch source tree (no search/ package): set SRC"
if [[ " $PHASES " == *" schema "* && "$EXAMPLES" != 0 ]]; then
  "$PYTHON" -c 'import schemathesis' 2>/dev/null || fail "schemathesis is missing: pip install -e '.[bench]' (or EXAMPLES=0)"
fi

server_args=()
for arg in $SERVER_ARGS; do server_args+=(--server-arg="$arg"); done
cd "$ROOT"
export PYTHONPATH="$ROOT/benchmarks/reliability${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086
nice -n "$NICE" "$PYTHON" -m reliability_harness run --src "$SRC" --python "$PYTHON" \
  --pipeline compressed="$COMPRESSED" --pipeline static="$STATIC" --pipeline teacher="$TEACHER" --port "$PORT" "${server_args[@]}" \
  --dataset "$DATASET" --out "$OUT" --label "$LABEL" --phases $PHASES --levels $LEVELS --duration "$DURATION" \
  --warmup "$WARMUP" --case-timeout "$CASE_TIMEOUT" --storm-timeout "$STORM_TIMEOUT" \
  --schemathesis-examples "$EXAMPLES"

if [ -f "$RESULTS/previous/results.json" ] && [ -f "$RESULTS/current/results.json" ]; then
  echo
  "$PYTHON" -m reliability_harness compare "$RESULTS/previous" "$RESULTS/current" --out "$RESULTS/compare.md"
fi
