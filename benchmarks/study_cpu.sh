#!/usr/bin/env bash
# The equal-memory study at CPU scale (benchmarks/RESULTS.md), one kind at a time:
#   2d   slices of the real T1 head of ../shared/data (phantoms where it is absent), 64x64,
#        4 coils, PGD-ResNet with 8 iterations (16 features, 2 blocks), 1000 steps
#   3d   slabs of the same head, 16x32x32, 4 coils, 3D PGD-ResNet with 6 iterations, 300 steps
#   cine the beating-heart phantom, 8 frames of 48x48, 4 coils, (2+1)D PGD-ResNet, 6 iterations
# with a budget in which end to end fits 3 (2d) or 2 (3d, cine) iterations, 3 seeds per arm.
# Usage: bash benchmarks/study_cpu.sh [KIND] [OUT] [ARM ...]   (default 2d, runs/study-KIND, all
# arms). SET="key=value ..." adds config overrides for every arm, e.g. the bounded network on
# which MEL (the invertible arm) trains: SET="model.dc.step_max=0.5 model.spectral_bound=0.25".
# Every run uses one thread (OMP_NUM_THREADS=1) so that step times compare across arms
# while the second core stays free; keep the machine otherwise idle. 2d: about an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-2d}
OUT=${2:-runs/study-$KIND}
shift $(( $# < 2 ? $# : 2 ))
ARMS=("$@")
export OMP_NUM_THREADS=1
GLEAM=${GLEAM:-.venv/bin/gleam}
DATA=runs/study-data/$KIND
HEAD=../shared/data/colin27_t1.nii.gz
case "$KIND" in
    2d) SIM=(--n 18 --slices 6 --shape 64x64); BUDGET=e2e@3 ;;
    3d) SIM=(--n 12 --slices 2 --shape 16x32x32); BUDGET=e2e@2 ;;
    cine) SIM=(--n 12 --slices 2 --shape 8x48x48); BUDGET=e2e@2 ;;
    *) echo "unknown kind $KIND (2d, 3d or cine)" >&2; exit 2 ;;
esac
if [ ! -d "$DATA/test" ]; then
    ANATOMY=()
    if [ "$KIND" != cine ]; then
        [ -f "$HEAD" ] && ANATOMY=(--anatomy "$HEAD") || echo "note: $HEAD absent, simulating phantoms"
    fi
    "$GLEAM" simulate "$DATA" --kind "$KIND" "${SIM[@]}" --coils 4 "${ANATOMY[@]}" --quiet
fi
OVERRIDES=()
for kv in ${SET:-}; do OVERRIDES+=(--set "$kv"); done
"$GLEAM" study "configs/study-$KIND.yaml" --set data.root="$DATA" "${OVERRIDES[@]}" \
    --budget "$BUDGET" --seeds 3 --device cpu --out "$OUT" --quiet ${ARMS[@]:+--arms "${ARMS[@]}"}
