"""Memory of one ``gleam adapt`` training step per strategy, on 2D, 3D-slab and cine scans.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    python benchmarks/adapt_memory.py --out benchmarks/results/adapt-memory.json

Simulates one scan of each kind (``gleam simulate``'s phantoms, 8 coils), undersamples it
(2D: random lines 4x; 3D: Poisson-disc 4x over (kz, ky), trained on readout slabs; cine: 4x per
frame), and measures the first training step of ``gleam adapt``'s default network (MoDL,
``selfsup.adapt.DEFAULT_CONFIG``, at ``--unrolls`` iterations) with each strategy: the peak
memory (CUDA ``max_memory_allocated`` on a GPU, else the live tensor bytes of
:class:`~gleam_mri.meters.live_tensors.LiveTensorMeter`, which counts what a strategy really holds,
including checkpoint recomputation) and the median time of ``--repeats`` further steps. Ratios
between strategies are measured side by side in one run; absolute times mean something only on a
GPU, named in the output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gleam_mri.adapt.scan import load_scan
from gleam_mri.adapt.splits import Splits
from gleam_mri.adapt.zero_shot import DEFAULT_CONFIG, AdaptOptions
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.devices import resolve_device
from gleam_mri.selfsup.split import Splitter
from gleam_mri.training.loop import build_run, measured_step
from gleam_mri.training.run_config import config_from_dict

CASES = {  # kind: (shape, mask, slab)
    "2d": ((256, 256), {"name": "random", "center_fractions": [0.08], "accelerations": [4]}, None),
    "3d": ((32, 64, 48), {"name": "poisson", "acceleration": 4, "calib": [8, 8]}, 32),
    "cine": ((12, 96, 96), {"name": "cine", "acceleration": 4, "center_lines": 8}, None),
}
STRATEGIES = {
    "e2e": {"strategy.name": "e2e"},
    "checkpoint": {"strategy.name": "checkpoint", "strategy.checkpoint_every": 1},
    "invertible (MEL)": {"strategy.name": "invertible", "strategy.inversion": "fixed-point"},
    "greedy (GLEAM)": {"strategy.name": "greedy"},
}


def measure(kind: str, unrolls: int, repeats: int, device: str, workdir: Path) -> list[dict]:
    """Memory and step time of every strategy on one simulated scan of ``kind``."""
    shape, mask, slab = CASES[kind]
    spec = SyntheticSpec(kind=kind, n_volumes=1, slices_per_volume=1, shape=shape, n_coils=8)
    write_synthetic_dataset(workdir / kind, spec, progress=False)
    scan = load_scan(next((workdir / kind).rglob("*.h5")), mask, slab=slab)
    dev = resolve_device(device)
    rows = []
    for label, sets in STRATEGIES.items():
        overrides = [f"{k}={v}" for k, v in sets.items()] + [f"model.unrolls={unrolls}"]
        cfg = config_from_dict(DEFAULT_CONFIG, overrides)
        run = build_run(cfg, kind, dev)
        strategy = run.strategy
        splits = Splits(scan.items, AdaptOptions(), Splitter())
        measured_step(run, splits.training_batch(0).to(dev))
        peak, method = run.step_memory["bytes"], run.step_memory["method"]
        times = []
        for step in range(1, repeats + 1):
            batch = splits.training_batch(step).to(dev)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            started = time.perf_counter()
            strategy.train_step(batch)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "kind": kind,
                "item": list(scan.items[0].kspace.shape[1:]),
                "strategy": label,
                "peak_MiB": peak / 2**20,
                "memory_method": method,
                "median_step_s": statistics.median(times),
            }
        )
        print(
            f"{kind:5s} {label:17s} peak {peak / 2**20:8.1f} MiB  "
            f"step {statistics.median(times):.2f} s  ({method})"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default="2d,3d,cine", help="comma-separated kinds")
    parser.add_argument("--unrolls", type=int, default=6, help="MoDL iterations")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            row
            for kind in args.kinds.split(",")
            for row in measure(kind, args.unrolls, args.repeats, args.device, Path(tmp))
        ]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
