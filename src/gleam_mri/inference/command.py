"""``gleam eval`` (per-volume metrics of a checkpoint) and ``gleam recon`` (reconstruct files)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``eval`` and ``recon`` on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "eval",
        help="per-volume metrics of a trained checkpoint on a folder of .h5 files",
        description="Reconstruct every file of DATA with the checkpoint (using its training "
        "mask, fixed per slice) and score it with fastMRI's metrics.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint written by gleam train")
    p.add_argument("data", type=Path, help="folder of .h5 files (or one file)")
    p.add_argument("--out", type=Path, default=None, help="write metrics to .csv or .json")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run_eval)

    p = subparsers.add_parser(
        "recon",
        help="reconstruct fastMRI, ISMRMRD, twix or BART CFL files with a trained checkpoint "
        "(or compressed sensing)",
        description="Write OUT/<name>.h5 (dataset 'reconstruction'), .nii.gz, .png and, with "
        "--formats ...,dcm, a DICOM series in OUT/<name>_dicom/. Files "
        "with their own mask are used as they are; fully sampled files are undersampled with "
        "the checkpoint's mask unless --no-undersample; files without maps get ESPIRiT or JSENSE "
        "maps, whichever predicts held-out lines better (as in gleam adapt). "
        "--model NAME uses a network shipped with the package instead of a checkpoint. "
        "A MODEL.onnx written by gleam export runs with ONNX Runtime (--engine onnx; "
        "--engine onnx with a checkpoint exports it first). "
        "--method cs reconstructs with l1-wavelet compressed sensing instead of a network (as "
        "BART's pics), its weight chosen per file without a reference: the weight whose image "
        "of 80% of the measured lines best predicts the 20% held out (printed); fully sampled "
        "files need --mask then.",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        help="checkpoint written by gleam train, or a .onnx written by gleam export (not "
        "with --model or --method cs)",
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, help="fastMRI .h5, ISMRMRD .h5, twix .dat or BART .cfl"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a shipped prior instead of a checkpoint: " + _shipped(),
    )
    p.add_argument(
        "--method",
        choices=("network", "cs"),
        default="network",
        help="network: the checkpoint's or --model's (default); cs: compressed sensing, no network",
    )
    p.add_argument(
        "--engine",
        choices=("torch", "onnx"),
        default=None,
        help="torch: PyTorch; onnx: ONNX Runtime (default: onnx for a .onnx model, else torch)",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="YAML",
        help="--method cs: undersample fully sampled files retrospectively, e.g. "
        "'{name: random, center_fractions: [0.08], accelerations: [4]}'",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--formats", default="h5,nii,png", help="comma-separated: h5, nii, png, dcm (DICOM)"
    )
    p.add_argument("--no-undersample", action="store_true", help="use all measured k-space")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run_recon)


def _shipped() -> str:
    from gleam_mri.inference.priors import prior_names

    return ", ".join(prior_names()) or "none shipped"


def run_eval(args: argparse.Namespace) -> int:
    """Score the checkpoint on the data and print the table; 0 on success."""
    from gleam_mri.inference import evaluate_checkpoint
    from gleam_mri.recon.evaluate import summarize
    from gleam_mri.report import metrics_table

    results = evaluate_checkpoint(args.checkpoint, args.data, args.out, device=args.device)
    print(metrics_table({"network": summarize(results)}))
    if args.out:
        print(f"per-volume metrics written to {args.out}")
    return 0


def run_recon(args: argparse.Namespace) -> int:
    """Reconstruct each input and print the files written; 0 on success."""
    from gleam_mri.inference import load_run, reconstruct_with_run
    from gleam_mri.inference.priors import load_prior, resolve_prior

    formats = tuple(f.strip() for f in args.formats.split(","))
    inputs = list(args.inputs)
    if args.method == "cs":
        return _recon_cs(args, [p for p in (args.checkpoint, *inputs) if p is not None], formats)
    if args.mask is not None:
        raise ValueError("--mask goes with --method cs (a network undersamples with its own mask)")
    if args.model is not None:  # every positional is an input
        inputs = [p for p in (args.checkpoint, *inputs) if p is not None]
        source = resolve_prior(args.model)
    elif args.checkpoint is None:
        raise ValueError("give a checkpoint (written by gleam train) or --model NAME")
    else:
        source = args.checkpoint
    onnx_file = source.suffix == ".onnx"
    engine = args.engine or ("onnx" if onnx_file else "torch")
    if engine == "torch" and onnx_file:
        raise ValueError(f"{source}: an ONNX model runs with --engine onnx")
    with tempfile.TemporaryDirectory() as tmp:
        if engine == "onnx":
            run, image_of = _onnx_engine(source, Path(tmp))
        elif args.model is not None:
            (run, _), image_of = load_prior(args.model, args.device), None
        else:
            (run, _), image_of = load_run(source, args.device), None
        for path in inputs:
            written = reconstruct_with_run(
                run,
                path,
                args.out,
                formats=formats,
                undersample=not args.no_undersample,
                engine=image_of,
            )
            for w in written:
                print(w)
    return 0


def _onnx_engine(source: Path, tmp: Path):
    """``(run, engine.reconstruct)`` of an ONNX model, or of a checkpoint exported into
    ``tmp`` first; ``run`` carries the model's config (its mask and maps)."""
    import time

    from gleam_mri.onnx.engine import onnx_run
    from gleam_mri.onnx.export import as_onnx

    start = time.perf_counter()
    exported = as_onnx(source, tmp)
    if exported != source:
        print(f"exported to ONNX in {time.perf_counter() - start:.0f} s")
    run, engine = onnx_run(exported)
    return run, engine.reconstruct


def _recon_cs(args: argparse.Namespace, inputs: list[Path], formats: tuple[str, ...]) -> int:
    """``gleam recon --method cs``: every positional is an input."""
    from gleam_mri.inference.files import reconstruct_with_cs
    from gleam_mri.physics.masks import mask_spec_from_yaml

    if args.model is not None:
        raise ValueError("--method cs uses no network: drop --model")
    mask_spec = mask_spec_from_yaml(args.mask)
    for path in inputs:
        written, choice = reconstruct_with_cs(path, args.out, formats, mask_spec)
        print(f"{path}: {choice.describe()}")
        for w in written:
            print(w)
    return 0
