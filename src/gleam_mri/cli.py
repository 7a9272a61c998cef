"""The ``gleam`` command line: simulate | baseline | info | demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gleam_mri import __version__


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gleam_mri.data.synthetic import SyntheticSpec, parse_shape, write_synthetic_dataset

    spec = SyntheticSpec(
        kind=args.kind,
        n_volumes=args.n,
        slices_per_volume=args.slices,
        shape=parse_shape(args.shape),
        n_coils=args.coils,
        snr_db=args.snr,
        anatomy=str(args.anatomy) if args.anatomy else None,
        seed=args.seed,
    )
    written = write_synthetic_dataset(args.out_dir, spec, progress=not args.quiet)
    for split, files in written.items():
        print(f"{split}: {len(files)} files in {Path(args.out_dir) / split}")
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from gleam_mri.data.fastmri import inspect_fastmri
    from gleam_mri.recon.baselines import default_mask_spec, run_baselines, split_files, summaries
    from gleam_mri.report import metrics_table

    files = split_files(args.data, args.split)
    info = inspect_fastmri(files[0])
    mask_spec = None
    if args.acceleration != 1:
        image_shape = tuple(info.kspace_shape[2:])
        mask_spec = default_mask_spec(info.kind, args.acceleration, image_shape=image_shape)
    results = run_baselines(
        files,
        mask_spec,
        methods=args.methods.split(","),
        maps=args.maps,
        lam=args.lam,
        max_iter=args.iters,
        progress=not args.quiet,
    )
    print(metrics_table(summaries(results)))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = {m: [{"file": v.file, **v.metrics} for v in r] for m, r in results.items()}
        out.write_text(json.dumps(rows, indent=2))
        print(f"per-volume metrics written to {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from gleam_mri.data.fastmri import inspect_fastmri

    for path in args.files:
        info = inspect_fastmri(path)
        print(f"{path}: {info}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gleam_mri.demo import run_demo

    run_demo(args.out, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gleam`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="gleam",
        description="Unrolled networks for accelerated multi-coil MRI (GLEAM greedy training).",
    )
    parser.add_argument("--version", action="version", version=f"gleam-mri {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "simulate",
        help="write a synthetic multi-coil data set in the fastMRI HDF5 layout",
        description="Simulate phantoms (or real anatomy from a NIfTI volume) with coil maps, "
        "phase and noise, and write fully sampled k-space to OUT_DIR/{train,val,test}/*.h5.",
    )
    p.add_argument("out_dir", type=Path, help="output folder")
    p.add_argument("--kind", choices=["2d", "3d", "cine"], default="2d", help="data kind")
    p.add_argument("--n", type=int, default=12, help="number of files (volumes), all splits")
    p.add_argument("--slices", type=int, default=4, help="slices (2D) / slabs / series per file")
    p.add_argument("--shape", default=None, help="image size: HxW (2d), ZxHxW (3d), TxHxW (cine)")
    p.add_argument("--coils", type=int, default=8, help="number of receive coils")
    p.add_argument("--snr", type=float, default=40.0, help="k-space SNR in dB")
    p.add_argument("--anatomy", type=Path, default=None, help="NIfTI magnitude volume to use")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "baseline",
        help="score zero-filled and CG-SENSE reconstructions on a data set",
        description="Undersample a data set split with its kind's default mask, reconstruct "
        "with classical methods and print fastMRI metrics (per volume, mean ± std).",
    )
    p.add_argument("data", type=Path, help="data folder (with train/val/test) or a folder of .h5")
    p.add_argument("--split", default="test", help="split folder to use (default: test)")
    p.add_argument("--acceleration", type=float, default=4, help="undersampling factor")
    p.add_argument("--methods", default="zero-filled,cg-sense", help="comma-separated methods")
    p.add_argument(
        "--maps", choices=["file", "espirit"], default="file", help="coil maps: stored or ESPIRiT"
    )
    p.add_argument("--lam", type=float, default=1e-2, help="CG-SENSE Tikhonov weight")
    p.add_argument("--iters", type=int, default=20, help="CG-SENSE iterations")
    p.add_argument("--out", type=Path, default=None, help="write per-volume metrics JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("info", help="describe fastMRI-layout HDF5 files without loading them")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "demo",
        help="simulate the synthetic 2D set, reconstruct it, write a report",
        description="The README's demo: simulate, reconstruct the test split (zero-filled and "
        "CG-SENSE at 4x), print metrics, write report.md, metrics.json and images.png.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gleam`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"gleam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
