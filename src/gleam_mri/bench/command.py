"""The ``gleam bench`` subcommand (and ``benchmarks/bench.py``, which calls :func:`main`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Benchmark training strategies of an unrolled network: for each strategy and depth, one training
step's median time (CUDA events after warm-up; wall time on a CPU), its memory (CUDA
max_memory_allocated; saved-activation bytes on a CPU) and its achieved convolution TFLOP/s
(analytic FLOPs: forward + 2x backward). In the same run it measures the floors: copy bandwidth,
the throughput of each of the model's convolutions alone (bf16 channels-last on CUDA) and the
CNN-only floor (a training step of the model's CNNs alone). Writes OUT/bench.json, OUT/bench.md
and OUT/bench.png. See docs/bench.md."""

EXAMPLE = """\
Example on a GPU:
  gleam bench --preset varnet-knee --depths 4 8 16 32 --amp --channels-last --fastmri \\
      --out runs/bench/varnet"""


def _epilog() -> str:
    from gleam_mri.bench.shapes import PRESETS

    lines = ["presets:"] + [f"  {name:<12} {s.description}" for name, s in PRESETS.items()]
    return "\n".join([*lines, EXAMPLE])


def _strategies(values: list[str]) -> list[str]:
    return [s for v in values for s in v.split(",") if s]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``gleam bench`` (shared with ``benchmarks/bench.py``)."""
    from gleam_mri.training.strategies import STRATEGIES

    single = [name for name, cls in STRATEGIES.items() if not cls.distributed]
    p.add_argument("--preset", default="2d-knee", help="workload preset (see the list below)")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config whose model section replaces the preset's model (its data.kind must "
        "equal the preset's kind)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of --config, e.g. --set model.features=32, or set a strategy "
        "option (no --config needed), e.g. --set strategy.modules=4 --set "
        "strategy.checkpoint_every=2: each strategy takes the options it has (repeatable)",
    )
    p.add_argument(
        "--strategies",
        nargs="+",
        default=single,
        metavar="NAME",
        help=f"strategies to measure (default: all single-process ones, {', '.join(single)})",
    )
    p.add_argument(
        "--depths",
        nargs="+",
        type=int,
        default=[4, 8, 16, 32],
        metavar="N",
        help="numbers of unrolled iterations (default: 4 8 16 32)",
    )
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="bf16 autocast for the networks and the CNN-only floor (default: off)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="store convolution weights channels-last (default: off)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile each regulariser CNN (compile time is in warmup_s; default: off)",
    )
    p.add_argument(
        "--fused-adam",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Adam(fused=True) (default: on with CUDA, off on a CPU)",
    )
    p.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let cuDNN pick the fastest algorithm per shape (CUDA only; default: on)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--fastmri",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also train fastMRI's VarNet end to end and checkpointed (needs a varnet model "
        "on a 2D preset and the fastmri package)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument(
        "--floors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the floors (copy bandwidth, convolutions, CNN-only step; default: on)",
    )
    p.add_argument("--copy-mib", type=int, default=None, help="copy-bandwidth buffer (MiB)")
    p.add_argument(
        "--out", type=Path, default=Path("runs/bench"), help="output folder (default: runs/bench)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def add_parser(subparsers: Any) -> None:
    """Register ``bench`` on the ``gleam`` parser's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark training strategies: step time, memory, conv TFLOP/s, floors",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, kind: str) -> tuple[Any, dict[str, Any]]:
    """The model of ``--config`` (``None``: the preset's) and the strategy options given."""
    from gleam_mri.training.run_config import load_config

    if args.config is None:
        other = [s for s in args.set if not s.strip().startswith("strategy.")]
        if other:
            raise ValueError(
                f"--set {other[0]} needs --config (the model is the preset's otherwise); "
                "strategy options (--set strategy.KEY=VALUE) need none"
            )
        given = [s.strip().split("=", 1)[0].split(".", 1)[1] for s in args.set]
        cfg = load_config(None, args.set)
        return None, {k: cfg.strategy.options[k] for k in given if k in cfg.strategy.options}
    cfg = load_config(args.config, args.set)
    if cfg.data.kind != kind:
        raise ValueError(
            f"config {args.config}: data.kind is {cfg.data.kind!r} but the preset is {kind!r} "
            f"(set data.kind in the file or add --set data.kind={kind})"
        )
    return cfg.model, dict(cfg.strategy.options)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed arguments; write the outputs; 0 on success."""
    from gleam_mri.bench.harness import run_benchmark
    from gleam_mri.bench.options import BenchOptions
    from gleam_mri.bench.output import markdown_report, write_outputs
    from gleam_mri.bench.shapes import get_preset

    shape = get_preset(args.preset)
    model, strategy_options = _config(args, shape.kind)
    options = BenchOptions(
        strategies=tuple(_strategies(args.strategies)),
        depths=tuple(args.depths),
        batch=args.batch,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        fused_adam=args.fused_adam,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        fastmri=args.fastmri,
        strategy_options=strategy_options,
        lr=args.lr,
        floors=args.floors,
        copy_bytes=None if args.copy_mib is None else args.copy_mib * 2**20,
        cudnn_benchmark=args.cudnn_benchmark,
    )
    log = None if args.quiet else (lambda line: print(line, flush=True))
    result = run_benchmark(shape, options, model=model, log=log)
    paths = write_outputs(result, args.out)
    if not args.quiet:
        print()
        print(markdown_report(result))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``benchmarks/bench.py``): parse ``argv``, run, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
