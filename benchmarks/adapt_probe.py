"""How good is ``gleam adapt``'s stopping rule? Scan-specific runs traced against the reference.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    OMP_NUM_THREADS=1 python benchmarks/adapt_probe.py --acceleration 8 --out OUT

On one case of ``real_brain.py`` (the real 16-coil brain, fastMRI's random line mask, 8 % centre,
seed 0, gleam adapt's coil maps) it runs ``gleam adapt`` once per variant (a set of config
overrides and schedule options) and records, at every validation, the k-space validation loss
that adapt stops on and the PSNR of the network's image against the fully sampled reference,
which adapt never sees. Per variant: the PSNR of the kept step, the best PSNR the trace passed
(what a perfect stopping rule would keep) and the seconds. Writes ``OUT/probe-R{R}.json`` and
``OUT/probe-R{R}.md``; variants of an earlier run into the same OUT are kept beside these.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gleam_mri.adapt.scan import Scan
from gleam_mri.adapt.zero_shot import (
    DEFAULT_CONFIG,
    LARGE_OVERRIDES,
    LARGE_SCHEDULE,
    AdaptOptions,
    adapt,
)
from gleam_mri.metrics import volume_metrics
from gleam_mri.training.run_config import config_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_brain  # the cases
from real_brain_nets import ADAPT_MAPS, measured_batch

# Each variant names its held-out sets, so that it means the same whatever gleam adapt's defaults
# (SSDU's Gaussian points until they became whole lines drawn uniformly).
POINTS = ["ssdu.units=points", "ssdu.selection=gaussian"]
LINES = ["ssdu.units=lines", "ssdu.selection=uniform"]
LARGE = list(LARGE_OVERRIDES)  # gleam adapt --large
# key -> (label, config overrides, AdaptOptions fields)
VARIANTS: dict[str, tuple[str, list[str], dict]] = {
    "points": ("SSDU's Gaussian points (the earlier defaults)", POINTS, {}),
    "lines": (
        "whole lines, Gaussian (--set ssdu.units=lines --set ssdu.selection=gaussian)",
        ["ssdu.units=lines", "ssdu.selection=gaussian"],
        {},
    ),
    "lr": ("points, learning rate 2e-4 (--set optim.lr=2e-4)", [*POINTS, "optim.lr=2e-4"], {}),
    "fraction": ("points, loss share 0.2 (--fraction 0.2)", POINTS, {"fraction": 0.2}),
    "average": ("points, weight average (--average 0.99)", POINTS, {"average": 0.99}),
    "lines-uniform": (
        "whole lines, uniform (gleam adapt's defaults before the CS floor)",
        LINES,
        {},
    ),
    "cs-floor": (
        "whole lines, uniform, then the better of the network and CS (gleam adapt's defaults)",
        LINES,
        {"cs": True},
    ),
    "large": (
        "points, 8 iterations, 8 CG steps, 2 splits per step, 400 steps, patience 20",
        [*POINTS, *LARGE],
        LARGE_SCHEDULE,
    ),
    "large-lines": ("large, whole lines, uniform", [*LINES, *LARGE], LARGE_SCHEDULE),
}
DEFAULT_VARIANTS = ["points", "lines", "lr", "fraction", "average"]


def probe(case: real_brain.Case, overrides: list[str], fields: dict) -> dict:
    """One adapt run on ``case`` with its validation trace ``[(step, val_loss, PSNR)]``."""
    cfg = config_from_dict(DEFAULT_CONFIG, overrides)
    cfg.train.device = "cpu"
    scan = Scan(Path(case.name), "2d", {}, [measured_batch(case)])
    item, trace = scan.items[0], []

    def traced(strategy, val_loss):  # the loss adapt stops on, and the PSNR it cannot see
        image = strategy.reconstruct(item)[0].abs().double().numpy()
        trace.append((val_loss, volume_metrics(case.reference, image)["PSNR"]))

    start = time.perf_counter()
    fields = {"cs": False, **fields}  # the network alone, unless the variant compares with CS
    result = adapt(scan, cfg, AdaptOptions(**fields), progress=False, on_validation=traced)
    seconds = time.perf_counter() - start
    image = (result.volume[0] / case.scale).astype(np.float64)
    steps = [h["step"] for h in result.history]
    return {
        "image": result.comparison.kept if result.comparison else "network",
        "kept_step": result.best_step,
        "steps": result.steps,
        "PSNR": volume_metrics(case.reference, image)["PSNR"],
        "network_PSNR": trace[steps.index(result.best_step)][1],  # the kept weights' own image
        "best_PSNR_passed": max(p for _, p in trace),
        "best_PSNR_step": steps[int(np.argmax([p for _, p in trace]))],
        "seconds": seconds,
        "trace": [
            {"step": s, "val_loss": v, "PSNR": p} for s, (v, p) in zip(steps, trace, strict=True)
        ],
    }


def table(acceleration: float, rows: dict[str, dict]) -> str:
    lines = [
        f"| R{acceleration:g} variant | kept step / trained | image | PSNR kept | best PSNR "
        "passed (step) | s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['kept_step']} / {r['steps']} | {r.get('image', 'network')} | "
            f"{r['PSNR']:.2f} | {r['best_PSNR_passed']:.2f} ({r['best_PSNR_step']}) | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--acceleration", type=float, default=4)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    args = parser.parse_args(argv)
    case = real_brain.undersampled_case(acceleration=args.acceleration, maps=ADAPT_MAPS)
    rows = {}
    for key in args.variants:
        name, overrides, fields = VARIANTS[key]
        rows[name] = probe(case, overrides, fields)
        print(f"{name}: {json.dumps({k: v for k, v in rows[name].items() if k != 'trace'})}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"probe-R{args.acceleration:g}"
    command = "python benchmarks/adapt_probe.py " + " ".join(argv or sys.argv[1:])
    record = {"commands": [], "case": case.info, "variants": {}}
    if stem.with_suffix(".json").exists():  # an earlier run's variants stay, these replace theirs
        record = json.loads(stem.with_suffix(".json").read_text())
    record["commands"].append(command)
    record["variants"].update(rows)
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    stem.with_suffix(".md").write_text(table(args.acceleration, record["variants"]))
    print(table(args.acceleration, record["variants"]))


if __name__ == "__main__":
    main()
