"""The ``gleam`` command line: simulate, baseline, info, train, eval, recon, convert, demo, plan,
study, bench, adapt, serve."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gleam_mri import __version__


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gleam_mri.data.synthetic import SyntheticSpec, parse_shape, write_synthetic_dataset

    snr = args.snr
    if snr != "measured":
        try:
            snr = float(snr)
        except ValueError:
            raise ValueError(f"--snr must be a number (dB) or 'measured', got {snr!r}") from None
    spec = SyntheticSpec(
        kind=args.kind,
        n_volumes=args.n,
        slices_per_volume=args.slices,
        shape=parse_shape(args.shape),
        n_coils=args.coils,
        snr_db=snr,
        anatomy=str(args.anatomy) if args.anatomy else None,
        coils_from=str(args.coils_from) if args.coils_from else None,
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


def _cmd_train(args: argparse.Namespace) -> int:
    from gleam_mri.training.loop import TrainingStopped, fit
    from gleam_mri.training.run_config import load_config

    cfg = load_config(args.config, args.set)
    try:
        ckpt = fit(cfg, resume=args.resume, progress=not args.quiet)
    except TrainingStopped as err:
        why = str(err).replace("gleam plan CONFIG", f"gleam plan {args.config}")
        print(f"gleam train: {why}", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", 0)) == 0:  # one line per run under torchrun
        print(f"checkpoint: {ckpt}\nmetrics log: {ckpt.parent / 'metrics.jsonl'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from gleam_mri.inference import evaluate_checkpoint
    from gleam_mri.recon.evaluate import summarize
    from gleam_mri.report import metrics_table

    results = evaluate_checkpoint(args.checkpoint, args.data, args.out, device=args.device)
    print(metrics_table({"network": summarize(results)}))
    if args.out:
        print(f"per-volume metrics written to {args.out}")
    return 0


def _cmd_recon(args: argparse.Namespace) -> int:
    from gleam_mri.inference import reconstruct_file

    formats = tuple(f.strip() for f in args.formats.split(","))
    for path in args.inputs:
        written = reconstruct_file(
            args.checkpoint,
            path,
            args.out,
            formats=formats,
            undersample=not args.no_undersample,
            device=args.device,
        )
        for w in written:
            print(w)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from gleam_mri.data.convert import convert

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.inputs:
        out = out_dir / f"{Path(path).stem}.h5"
        target = convert(path, out, slices=args.slices, maps=args.maps, partitions=args.partitions)
        print(f"{path} -> {target}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gleam_mri.demo import run_demo

    run_demo(args.out, args.config, progress=not args.quiet, overrides=args.set)
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
    p.add_argument(
        "--snr",
        "--snr-db",
        default="40",
        help="k-space SNR in dB, or 'measured': the noise level of the --coils-from scan",
    )
    p.add_argument(
        "--anatomy",
        type=Path,
        default=None,
        help="NIfTI magnitude volume to use, or mni152 (the template inside nilearn)",
    )
    p.add_argument(
        "--coils-from",
        type=Path,
        default=None,
        help="real k-space (.npy (C, H, W) or fastMRI .h5) whose ESPIRiT maps, perturbed per "
        "slice, replace the simulated coils",
    )
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

    p = sub.add_parser(
        "info",
        help="describe fastMRI-layout HDF5 files without loading them",
        description="Print each file's kind, k-space shape, slices and what it holds "
        "(target, maps, mask, header), reading no array data.",
    )
    p.add_argument("files", nargs="+", type=Path, help="fastMRI-layout .h5 files")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "train",
        help="train an unrolled network (GLEAM greedy or a baseline strategy)",
        description="Train with a YAML config (see configs/); any field can be overridden with "
        "--set key.sub=value. Writes last.pt, config.yaml, metrics.jsonl and TensorBoard logs "
        "to train.out_dir. Strategies (strategy.name, options beside it): e2e; checkpoint "
        "(checkpoint_every); invertible (inversion: coupling, on a model.invertible=true network, "
        "or fixed-point = MEL, fixed_point_iters; on PGD MEL needs model.dc.step_max and "
        "model.spectral_bound); greedy (modules, mode, "
        "steps_per_module, module_loss); pipeline (modules, module_loss, staleness, replicas, "
        "timeout). Pipelined GLEAM (one process per stage and replica, "
        "world = stages x strategy.replicas): torchrun --standalone --nproc-per-node N "
        "-m gleam_mri.cli train CONFIG --set strategy.name=pipeline (see README).",
    )
    p.add_argument("config", type=Path, help="YAML config file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set model.unrolls=16 (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from train.out_dir/last.pt (pipeline: from the newest step every stage "
        "checkpointed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="per-volume metrics of a trained checkpoint on a folder of .h5 files",
        description="Reconstruct every file of DATA with the checkpoint (using its training "
        "mask, fixed per slice) and score it with fastMRI's metrics.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint written by gleam train")
    p.add_argument("data", type=Path, help="folder of .h5 files (or one file)")
    p.add_argument("--out", type=Path, default=None, help="write metrics to .csv or .json")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "recon",
        help="reconstruct fastMRI, ISMRMRD, twix or BART CFL files with a trained checkpoint",
        description="Write OUT/<name>.h5 (dataset 'reconstruction'), .nii.gz, .png and, with "
        "--formats ...,dcm, a DICOM series in OUT/<name>_dicom/. Files "
        "with their own mask are used as they are; fully sampled files are undersampled with "
        "the checkpoint's mask unless --no-undersample; files without maps get ESPIRiT maps.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint written by gleam train")
    p.add_argument(
        "inputs", nargs="+", type=Path, help="fastMRI .h5, ISMRMRD .h5, twix .dat or BART .cfl"
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--formats", default="h5,nii,png", help="comma-separated: h5, nii, png, dcm (DICOM)"
    )
    p.add_argument("--no-undersample", action="store_true", help="use all measured k-space")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_recon)

    p = sub.add_parser(
        "convert",
        help="convert raw data (ISMRMRD .h5, Siemens twix .dat, BART .cfl) to the fastMRI layout",
        description="Read raw k-space (ISMRMRD HDF5 with the header's encoding limits, "
        "Siemens twix via twixtools with the readout oversampling removed, or BART CFL) and "
        "write OUT/<name>.h5 in the fastMRI layout (kspace, mask, reconstruction_rss when "
        "fully sampled, ismrmrd_header).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="raw-data files")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--slices",
        choices=("native", "readout"),
        default="native",
        help="native (default): slices as acquired (a 3D acquisition stays one 3D volume); "
        "readout: a 3D Cartesian acquisition (ISMRMRD with kspace_encode_step_2, BART CFL with "
        "PHS2 > 1) as 2D slices, one per readout position x, k-space (x, coils, ky, kz) after "
        "an inverse FFT along kx and readout oversampling removal, for 2D training with a "
        "Poisson-disc mask over (ky, kz) as the GLEAM paper's mridata.org knees "
        "(configs/paper-*-knee*.yaml). Undersampled acquisitions keep zeros where nothing was "
        "measured and get no reconstruction_rss",
    )
    p.add_argument(
        "--maps",
        choices=("none", "espirit"),
        default="none",
        help="with --slices readout: espirit also stores ESPIRiT coil maps per slice (20 x 20 "
        "calibration of the fully sampled k-space, as the GLEAM code prepares the knees) for "
        "configs with data.maps: file; about 2 s per slice of 8 x 320 x 256 on one CPU thread",
    )
    p.add_argument(
        "--partitions",
        choices=("kz", "slice-kz", "slice-z"),
        default="kz",
        help="ISMRMRD 3D: where the partitions are. kz (default): kspace_encode_step_2; "
        "slice-kz: the slice counter holds kz; slice-z: the slice counter holds image-space z, "
        "Fourier-transformed to kz after a (-1)^n modulation (how the GLEAM code's data "
        "preparation, meddlr's format_mridata_org.py, reads the mridata.org knees; see "
        "docs/paper-scale.md)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "demo",
        help="simulate the synthetic 2D set, train GLEAM on it, evaluate, write a report",
        description="The README's demo: simulate the synthetic 2D set, train a small GLEAM "
        "PGD network (configs/demo-2d.yaml), evaluate it against zero-filled and CG-SENSE on "
        "the test split, print metrics, write report.md, metrics.json and images.png.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument(
        "--config", type=Path, default=Path("configs/demo-2d.yaml"), help="training config"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    from gleam_mri.adapt import command as adapt_command
    from gleam_mri.bench import command as bench_command
    from gleam_mri.plan import command as plan_command
    from gleam_mri.serve import command as serve_command
    from gleam_mri.study import command as study_command

    plan_command.add_parser(sub)
    study_command.add_parser(sub)
    bench_command.add_parser(sub)
    adapt_command.add_parser(sub)
    serve_command.add_parser(sub)
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
