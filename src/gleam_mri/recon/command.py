"""``gleam baseline``: reconstructions that learn nothing (zero-filled, CG-SENSE, l1-wavelet
compressed sensing) scored on a data set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``baseline`` on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "baseline",
        help="score zero-filled, CG-SENSE and compressed-sensing reconstructions on a data set",
        description="Undersample a data set split with its kind's default mask, reconstruct "
        "with classical methods and print fastMRI metrics (per volume, mean ± std). Methods: "
        "zero-filled, cg-sense (Tikhonov-regularised SENSE) and cs (l1-wavelet SENSE, as BART's "
        "pics; its weight is chosen per file without a reference, by how well the image of 80% "
        "of the measured lines predicts the 20% held out, and printed).",
    )
    p.add_argument("data", type=Path, help="data folder (with train/val/test) or a folder of .h5")
    p.add_argument("--split", default="test", help="split folder to use (default: test)")
    p.add_argument("--acceleration", type=float, default=4, help="undersampling factor")
    p.add_argument(
        "--methods",
        default="zero-filled,cg-sense",
        help="comma-separated: zero-filled, cg-sense, cs (default: zero-filled,cg-sense)",
    )
    p.add_argument(
        "--maps", choices=["file", "espirit"], default="file", help="coil maps: stored or ESPIRiT"
    )
    p.add_argument("--lam", type=float, default=1e-2, help="CG-SENSE Tikhonov weight")
    p.add_argument("--iters", type=int, default=20, help="CG-SENSE iterations")
    p.add_argument("--out", type=Path, default=None, help="write per-volume metrics JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the classical methods and print the table; 0 on success."""
    from gleam_mri.data.fastmri import inspect_fastmri
    from gleam_mri.recon.baselines import default_mask_spec, run_baselines, split_files, summaries
    from gleam_mri.report import metrics_table

    files = split_files(args.data, args.split)
    info = inspect_fastmri(files[0])
    mask_spec = None
    if args.acceleration != 1:
        image_shape = tuple(info.kspace_shape[2:])
        mask_spec = default_mask_spec(info.kind, args.acceleration, image_shape=image_shape)
    choices: dict = {}
    results = run_baselines(
        files,
        mask_spec,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        maps=args.maps,
        lam=args.lam,
        max_iter=args.iters,
        progress=not args.quiet,
        cs_choices=choices,
    )
    for path, choice in choices.items():
        tried = ", ".join(f"{lam:g}: {loss:.4g}" for lam, loss in choice.losses.items())
        print(f"cs: {Path(path).name}: l1 weight {choice.lam:g} (held-out loss by weight: {tried})")
    print(metrics_table(summaries(results)))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = {m: [{"file": v.file, **v.metrics} for v in r] for m, r in results.items()}
        out.write_text(json.dumps(rows, indent=2))
        print(f"per-volume metrics written to {out}")
    return 0
