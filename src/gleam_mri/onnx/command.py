"""``gleam export``: a trained checkpoint (or a shipped prior) as an ONNX model file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``export`` on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "export",
        help="write a trained network as one ONNX graph (physics inside) for ONNX Runtime",
        description="Write the network of CHECKPOINT (gleam train's last.pt / best.pt, gleam "
        "adapt's adapt.pt) or of a shipped prior (--model NAME) as one ONNX graph: inputs "
        "kspace (B, C, H, W, 2), mask (1, 1, 1, W) and coil maps (B, C, H, W, 2), output the "
        "complex image (B, H, W, 2), all float32 at the file's scale (the graph normalises "
        "inside); image size, coil count and batch are free. The model file records the kind, "
        "network, iterations, training mask and config. The file is checked with onnx.checker "
        "and run with onnxruntime against PyTorch before it is written. PGD, MoDL and VarNet "
        "in 2D; 3D and cine networks are refused. gleam recon MODEL.onnx FILE runs it.",
    )
    p.add_argument("checkpoint", type=Path, nargs="?", help="checkpoint (not with --model)")
    p.add_argument("--model", default=None, metavar="NAME", help="a shipped prior instead")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="run onnxscript's optimizer on the graph too (a much longer export for MoDL; "
        "onnxruntime optimises the graph when it loads it either way)",
    )
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Export and print what was written; 0 on success."""
    from gleam_mri.onnx.export import export_checkpoint

    if (args.checkpoint is None) == (args.model is None):
        raise ValueError("give a checkpoint or --model NAME (one of them)")
    if args.model is not None:
        from gleam_mri.inference.priors import resolve_prior

        source = resolve_prior(args.model)
    else:
        source = args.checkpoint
    if args.out.suffix != ".onnx":
        raise ValueError(f"{args.out}: name the output file .onnx")
    start = time.perf_counter()
    report = export_checkpoint(source, args.out, optimize=args.optimize)
    meta = report.metadata
    print(
        f"{report.path}: {meta['kind']} {meta['model']}, {meta['iterations']} iterations, "
        f"{report.path.stat().st_size / 2**20:.1f} MiB; onnxruntime matches PyTorch to "
        f"{report.max_relative_difference:.1e} (relative); {time.perf_counter() - start:.0f} s"
    )
    return 0
