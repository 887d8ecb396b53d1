#!/usr/bin/env bash
# Issue 9: query encoders in the teacher's space, measured as a family, and the main job that ships one of them.
# Run from the repository root with the project installed (README, command 1). Overrides: OUT, TEXTS, EPOCHS.
set -euo pipefail
OUT=${OUT:-benchmarks/students}
TEXTS=${TEXTS:-4000}    # the family's equal training budget (texts), ...
EPOCHS=${EPOCHS:-1}     # ... and passes over them
STUDENTS=${STUDENTS:-runs/students}
STEPS=${STEPS:-main family prune frontier}   # any subset, in this order
mkdir -p "$OUT" "$STUDENTS"
step() { [[ " $STEPS " == *" $1 "* ]]; }

# 1. the main job: trains its candidates (teacher-layers:0,11 and static, 16,000 texts), picks one under the
#    budget (encode p50 <= teacher's / 15) on held-out training texts, evaluates every pipeline on the test split
if step main; then
  semsearch run --dataset scifact --json > "$OUT/main_job.json"
  semsearch run --dataset scifact | grep -v "━" | tee "$OUT/main_job.txt"   # all cache hits now: the table for people
fi

# 2. the family at one equal, small budget (family.sh)
if step family; then TEXTS="$TEXTS" EPOCHS="$EPOCHS" STUDENTS="$STUDENTS" bash "$(dirname "$0")/family.sh"; fi

# 3. the shipped slice's int8 model with its vocabulary pruned to what SciFact's corpus and TRAIN queries produce
#    (all of it; and the 9,000 most frequent tokens, to bring the file under 22 MB)
if step prune; then
  int8=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['students']['teacher-layers:0,11']['int8_dir'])" \
    "$OUT/main_job.json")
  semsearch prune-vocab --model "$int8" --out "$STUDENTS/pruned-corpus" --dataset scifact --json \
    > "$STUDENTS/pruned-corpus.json"
  semsearch prune-vocab --model "$int8" --out "$STUDENTS/pruned-top9000" --dataset scifact --max-tokens 9000 --json \
    > "$STUDENTS/pruned-top9000.json"
fi

# 4. the frontier: every student x precision, the teacher and naive int8 MiniLM as references, on SciFact test
step frontier || exit 0
args=()
while IFS= read -r line; do args+=("$line"); done < <(python - "$OUT/main_job.json" "$STUDENTS" <<'PY'
import json, sys
from pathlib import Path
job, students = json.load(open(sys.argv[1])), Path(sys.argv[2])
def family(spec: str) -> str:
    return "static" if spec == "static" else "teacher-slice" if spec.startswith("teacher-layers") else "minilm+projection"
rows = []
for spec, built in job["students"].items():
    label = "shipped-" + spec.replace("teacher-layers:", "L").replace(",", "_")
    rows += [(f"{label}-fp32", built["fp32_dir"], family(spec)), (f"{label}-int8", built["int8_dir"], family(spec))]
for folder in sorted(p for p in students.iterdir() if p.name.endswith("-onnx")):
    name = folder.name.removesuffix("-onnx")
    spec = json.load(open(students / name / "distill_config.json"))["student"]
    rows += [(f"family-{name}-fp32", folder / "fp32", family(spec)),
             (f"family-{name}-int8", folder / "int8-dynamic", family(spec))]
for folder in sorted(students.glob("pruned-*/")):
    rows.append((f"shipped-L0_11-int8-{folder.name}", folder, "teacher-slice"))
for name, path, fam in rows:
    print("--student"); print(f"{name}={path}:asym"); print("--family"); print(f"{name}={fam}")
PY
)
semsearch bench-students --dataset scifact --out "$OUT/frontier" "${args[@]}"
