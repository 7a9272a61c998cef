"""Real 2D brain: the networks beside the classical baselines of ``real_brain.py``.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    python benchmarks/real_brain_nets.py --out benchmarks/results/real-brain-nets \\
        --supervised runs/brain-sim-train/last.pt --self-supervised runs/brain-ssdu-train/last.pt

On the same undersampled cases as ``real_brain.py`` (the real 16-coil FLASH brain with fastMRI's
random line mask at 4x and 8x, 8 % centre, fixed seed; the same coil maps for every method) it
adds to zero-filled, CG-SENSE and BART's l1-wavelet CS:

- ``supervised (simulation)``: a network trained with targets on realistic simulation
  (``configs/brain-sim-2d.yaml``), applied as it is;
- ``self-supervised (simulation)``: the same network trained on the same undersampled data
  without targets (``configs/brain-ssdu-2d.yaml``, SSDU);
- ``gleam adapt``: scan-specific training on the case's own k-space from scratch, and from the
  supervised checkpoint (``--init``), with ``gleam adapt``'s defaults.

Checkpoints that are not given (or not found) are left out with a note. Times are seconds on this
machine's CPU; adapt's include its training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gleam_mri.adapt.scan import Scan
from gleam_mri.adapt.zero_shot import DEFAULT_CONFIG, AdaptOptions, adapt, adapt_config
from gleam_mri.config import config_to_dict
from gleam_mri.inference import load_run, reconstruct
from gleam_mri.inference.priors import shipped_start
from gleam_mri.training.run_config import config_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_brain  # the classical baselines and the table writers

# gleam adapt's ESPIRiT (gleam_mri.recon.coil_maps.ESPIRIT_OPTIONS), used by every method here
ADAPT_MAPS = real_brain.Maps("espirit", 6, 0.0, calib=64)


def measured_batch(case: real_brain.Case):
    """The case as a B = 1 batch whose mask is its measured samples (what adapt trains on)."""
    from gleam_mri.adapt.scan import with_measured

    return with_measured(case.batch(), Path(case.name))


def network_method(checkpoint: Path):
    """``case -> complex image (H, W)`` with a trained checkpoint (no training)."""
    run, _ = load_run(checkpoint, "cpu")
    return lambda case: reconstruct(run, case.batch())[0]


def adapt_method(init: Path | None, options: AdaptOptions, log: dict, prior: bool = False):
    """``case -> complex image (H, W)``: ``gleam adapt`` on the case, from ``init`` if given, else
    from the shipped 2D prior (``prior``: what ``gleam adapt FILE`` does) or from scratch."""

    def method(case: real_brain.Case) -> torch.Tensor:
        if init is None:
            cfg, initial = config_from_dict(DEFAULT_CONFIG), None
            cfg.train.device = "cpu"
            if prior:
                initial, start = shipped_start("2d", config_to_dict(cfg)["model"])
                if initial is None:
                    raise RuntimeError(f"gleam adapt would start from {start}")
        else:
            cfg, initial = adapt_config(init, "cpu")
        scan = Scan(Path(case.name), "2d", {}, [measured_batch(case)])
        result = adapt(scan, cfg, options, initial, progress=False)
        kept = "network" if result.comparison is None else result.comparison.kept
        if kept == "blend":  # the network's share
            kept = f"blend {result.comparison.share:g}"
        if result.untrained:  # too few lines to train on
            kept = "cs (no network: too few lines)"
        log[case.name] = {"best_step": result.best_step, "steps": result.steps, "kept": kept}
        # adapt returns the magnitude at the file's scale; the case works on its own scale
        return torch.from_numpy(result.volume[0] / case.scale)

    return method


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument("--supervised", type=Path, default=None, help="brain-sim-2d checkpoint")
    parser.add_argument("--self-supervised", type=Path, default=None, help="SSDU checkpoint")
    parser.add_argument("--adapt-steps", type=int, default=AdaptOptions().steps)
    parser.add_argument("--no-bart", action="store_true", help="leave BART out")
    parser.add_argument(
        "--maps",
        choices=("adapt", "benchmark"),
        default="adapt",
        help="coil maps of every method: gleam adapt's ESPIRiT (uncropped, calibration up to 64) "
        "or real_brain.py's default (kernel 4, crop 0.8)",
    )
    args = parser.parse_args(argv)
    maps = ADAPT_MAPS if args.maps == "adapt" else real_brain.DEFAULT_MAPS
    cases = [
        real_brain.undersampled_case(
            acceleration=r, center_fraction=args.center_fraction, seed=args.seed, maps=maps
        )
        for r in args.accelerations
    ]
    methods = real_brain.default_methods(bart=False if args.no_bart else None)
    notes = []
    for label, path in (
        ("supervised (simulation)", args.supervised),
        ("self-supervised (simulation)", args.self_supervised),
    ):
        if path is not None and path.exists():
            methods[label] = network_method(path)
        else:
            notes.append(f"{label}: no checkpoint given or found ({path})")
    adapted: dict[str, dict] = {}
    options = AdaptOptions(steps=args.adapt_steps)
    methods["gleam adapt (scratch)"] = adapt_method(
        None, options, adapted.setdefault("scratch", {})
    )
    if args.supervised is not None and args.supervised.exists():
        log = adapted.setdefault("init", {})
        methods["gleam adapt (from supervised)"] = adapt_method(args.supervised, options, log)
    sweeps = real_brain.default_sweeps(bart=False if args.no_bart else None)
    results = real_brain.run(methods, cases, sweeps)
    results.cases["adapt"] = adapted  # the kept step of each adapt run
    command = "python benchmarks/real_brain_nets.py " + " ".join(argv or sys.argv[1:])
    real_brain.write_results(args.out, results, cases, command)
    for note in notes:
        print(note)
    print(real_brain.table_md(results))


if __name__ == "__main__":
    main()
