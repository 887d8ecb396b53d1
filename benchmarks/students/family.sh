#!/usr/bin/env bash
# The student family at one equal, small training budget: each student distilled on the same TEXTS training texts
# for EPOCHS passes (the first 512 shuffled texts held out: the main job's validation slice), exported to ONNX and
# quantized to dynamic int8. Overrides: TEXTS, EPOCHS, STUDENTS (folder), THREADS.
set -euo pipefail
TEXTS=${TEXTS:-4000}
EPOCHS=${EPOCHS:-1}
STUDENTS=${STUDENTS:-runs/students}
THREADS=${THREADS:-2}
mkdir -p "$STUDENTS"
for spec in "teacher-layers:0," "teacher-layers:0,11" "teacher-layers:0,1,11" "teacher-layers:0,1,10,11" \
            "minilm" "minilm-layers:0,2,5"; do
  name=$(echo "$spec" | tr ':,' '-_' | sed 's/_$//')
  [ -f "$STUDENTS/$name/distill_report.json" ] || \
    semsearch distill --student "$spec" --max-texts "$TEXTS" --epochs "$EPOCHS" --eval-texts 512 --threads "$THREADS" \
      --out "$STUDENTS/$name" --json > "$STUDENTS/$name.json"
  python -c "import sys; from pathlib import Path; from search.jobs.students import ensure_int8; \
ensure_int8(Path(sys.argv[1]), Path(sys.argv[1] + '-onnx'), 'dynamic', [])" "$STUDENTS/$name"
done

