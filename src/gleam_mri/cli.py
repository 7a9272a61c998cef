"""The ``gleam`` command line: dispatch only. Each command's parser and action live with its
package (``command.py``): simulate, info, convert (data); baseline (recon); train (training);
eval, recon (inference); demo; plan; study; bench; adapt; serve."""

from __future__ import annotations

import argparse
import sys

from gleam_mri import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gleam`` and its subcommands."""
    from gleam_mri import demo
    from gleam_mri.adapt import command as adapt_command
    from gleam_mri.bench import command as bench_command
    from gleam_mri.data import command as data_command
    from gleam_mri.inference import command as inference_command
    from gleam_mri.onnx import command as export_command
    from gleam_mri.plan import command as plan_command
    from gleam_mri.recon import command as recon_command
    from gleam_mri.serve import command as serve_command
    from gleam_mri.study import command as study_command
    from gleam_mri.training import command as training_command

    parser = argparse.ArgumentParser(
        prog="gleam",
        description="Unrolled networks for accelerated multi-coil MRI (GLEAM greedy training).",
    )
    parser.add_argument("--version", action="version", version=f"gleam-mri {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = (data_command, recon_command, training_command, inference_command, demo)
    commands += (plan_command, study_command, bench_command, adapt_command, serve_command)
    commands += (export_command,)
    for command in commands:
        command.add_parser(sub)
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
