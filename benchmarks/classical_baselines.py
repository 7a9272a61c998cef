"""Zero-filled vs CG-SENSE on the synthetic data sets: the margin the issue asks to report.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    python benchmarks/classical_baselines.py --out benchmarks/results/classical.json

Simulates the demo's 2D set (and small 3D and cine sets), undersamples the test volumes with each
kind's default mask and prints per-method fastMRI metrics (mean ± std over volumes), plus the
CG-SENSE minus zero-filled PSNR margin.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.recon.baselines import default_mask_spec, run_baselines, split_files, summaries
from gleam_mri.report import metrics_table

CASES = {
    "2d": (SyntheticSpec(kind="2d", n_volumes=16, slices_per_volume=4, seed=0), 4),
    "3d": (SyntheticSpec(kind="3d", n_volumes=6, slices_per_volume=1, seed=0), 6),
    "cine": (SyntheticSpec(kind="cine", n_volumes=6, slices_per_volume=1, seed=0), 6),
}


def run_case(kind: str, lam: float, iters: int, workdir: Path) -> dict:
    spec, acceleration = CASES[kind]
    write_synthetic_dataset(workdir / kind, spec, progress=False)
    files = split_files(workdir / kind, "test")
    mask = default_mask_spec(kind, acceleration, image_shape=spec.shape)
    start = time.perf_counter()
    results = run_baselines(files, mask, lam=lam, max_iter=iters)
    seconds = time.perf_counter() - start
    summary = summaries(results)
    margin = summary["cg-sense"]["PSNR"]["mean"] - summary["zero-filled"]["PSNR"]["mean"]
    print(f"\n## {kind}: {len(files)} test volumes, {acceleration}x, mask {mask['name']}")
    print(metrics_table(summary))
    print(f"CG-SENSE - zero-filled PSNR: {margin:+.2f} dB ({seconds:.1f} s)")
    return {"acceleration": acceleration, "mask": mask, "summary": summary, "margin_db": margin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default="2d,3d,cine", help="comma-separated kinds")
    parser.add_argument("--lam", type=float, default=1e-2, help="CG-SENSE Tikhonov weight")
    parser.add_argument("--iters", type=int, default=20, help="CG-SENSE iterations")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {k: run_case(k, args.lam, args.iters, Path(tmp)) for k in args.kinds.split(",")}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
