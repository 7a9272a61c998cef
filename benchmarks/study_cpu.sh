#!/usr/bin/env bash
# The equal-memory study at CPU scale (benchmarks/RESULTS.md): 2D slices simulated from the real
# T1 head of ../shared/data (phantoms where it is absent), 64x64, 4 coils, PGD-ResNet with 8
# iterations (16 features, 2 blocks), a budget in which end to end fits 3 iterations, 3 seeds.
# Usage: bash benchmarks/study_cpu.sh [OUT] [ARM ...]   (default runs/study-2d, all arms). Every
# run uses one thread (OMP_NUM_THREADS=1) so that step times compare across arms while the
# second core stays free; keep the machine otherwise idle. About 45 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study-2d}
shift || true
ARMS=("$@")
export OMP_NUM_THREADS=1
GLEAM=${GLEAM:-.venv/bin/gleam}
DATA=runs/study-data/2d
HEAD=../shared/data/colin27_t1.nii.gz
if [ ! -d "$DATA/test" ]; then
    ANATOMY=()
    [ -f "$HEAD" ] && ANATOMY=(--anatomy "$HEAD") || echo "note: $HEAD absent, simulating phantoms"
    "$GLEAM" simulate "$DATA" --kind 2d --n 18 --slices 6 --shape 64x64 --coils 4 "${ANATOMY[@]}" --quiet
fi
"$GLEAM" study configs/study-2d.yaml --set data.root="$DATA" --budget e2e@3 --seeds 3 \
    --device cpu --out "$OUT" --quiet ${ARMS[@]:+--arms "${ARMS[@]}"}
