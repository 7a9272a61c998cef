#!/usr/bin/env bash
# Every GPU measurement the project records, in one run of under 9 minutes on one H100/H200:
# the `gleam bench` tables (time, memory, conv throughput per strategy and depth) and a short
# equal-memory study (MEL on the bounded network, on which it converges). Runs from source with
# only torch, numpy, h5py, PyYAML, tqdm, scipy and matplotlib installed (no pip install):
# PYTHONPATH=src.
# Usage: bash benchmarks/gpu.sh [OUT]   (default runs/gpu); everything is written under OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
PY=${PYTHON:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
started=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$PY" -c \
  "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# 1. gleam bench: strategies x depths (bf16, channels-last), one preset at a time, each bounded
FLAGS=(--depths 4 8 16 --amp --channels-last --repeats 5 --warmup 2)
for preset in 2d-knee varnet-knee 3d-slab cine; do
    timeout 70 "$PY" -m gleam_mri.cli bench --preset "$preset" "${FLAGS[@]}" \
        --out "$OUT/bench-$preset" > "$OUT/bench-$preset.log" 2>&1 \
        || echo "bench $preset: exit $? (see $OUT/bench-$preset.log)"
    tail -n 25 "$OUT/bench-$preset.log"
done

# 2. a short equal-memory study: phantom slices 192x192, 8 coils, PGD-ResNet 8 iterations
DATA="$OUT/study-data"
"$PY" -m gleam_mri.cli simulate "$DATA" --kind 2d --n 18 --slices 6 --shape 192x192 --coils 8 \
    --quiet > "$OUT/simulate.log" 2>&1
STUDY=(--set data.root="$DATA" --set model.features=32 --set data.batch_size=4
       --set train.steps=200 --set train.val_every=50 --budget e2e@3 --device cuda --quiet)
timeout 170 "$PY" -m gleam_mri.cli study configs/study-2d.yaml "${STUDY[@]}" --seeds 3 \
    --arms e2e-fit greedy checkpoint greedy-same-depth e2e-deep \
    --out "$OUT/study-2d" > "$OUT/study-2d.log" 2>&1 || echo "study: exit $? (see $OUT/study-2d.log)"
tail -n 30 "$OUT/study-2d.log"
# 3. MEL against greedy and checkpointing on the bounded network (README: the equal-memory study)
timeout 100 "$PY" -m gleam_mri.cli study configs/study-2d.yaml "${STUDY[@]}" --seeds 1 \
    --set model.dc.step_max=0.5 --set model.spectral_bound=0.25 \
    --arms greedy checkpoint invertible --out "$OUT/study-2d-bounded" \
    > "$OUT/study-2d-bounded.log" 2>&1 || echo "bounded study: exit $? (see $OUT/study-2d-bounded.log)"
tail -n 20 "$OUT/study-2d-bounded.log"
echo "gpu.sh: $(( $(date +%s) - started )) s; results in $OUT"
