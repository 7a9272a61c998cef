"""``gleam plan CONFIG --budget 24GiB``: what fits a memory budget per training strategy.

:func:`add_parser` registers the subcommand on the ``gleam`` parser's subparsers; :func:`run`
executes it (returns the exit status). The work is done by :func:`gleam_mri.plan.planner.plan`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Measure the configured network on this device (short real training steps at depths 1-3 and
batches 1-2) and choose, for each training strategy, the largest depth at the config's batch
size, the largest batch at the config's depth and its knob where it has one (greedy: the fewest
modules; checkpoint: the longest segments) that fit the budget; then explain each choice (total,
headroom, what dominates, what the next step needs).

The problem shape is read from the first file of data.root/data.train_split (with data.slab for
3D slabs) unless --shape and --coils are given. On a CPU only tensors saved for backward are
measured (no allocator peak statistics), so CPU totals are lower bounds; on CUDA the allocator's
peak is measured.
"""

EPILOG = """\
examples:
  gleam plan configs/paper-pgd-knee.yaml --budget 24GiB
  gleam plan configs/synthetic-2d.yaml --budget 1.5GB --shape 320x320 --coils 15 --json plan.json
  gleam plan configs/synthetic-3d.yaml --budget 80GiB --set model.features=32 --strategies greedy
"""


def budget_argument(text: str) -> int:
    """A ``--budget`` value in bytes (argparse type: a usage error for a bad size)."""
    from gleam_mri.units import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_int(text: str) -> int:
    """An integer ``>= 1`` (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``plan`` (with its options and ``func=run``) on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "plan",
        help="choose the depth, batch and strategy knobs (greedy modules, checkpoint segments) "
        "that fit a memory budget",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="YAML config file (model, strategy, data, optim)")
    p.add_argument(
        "--budget",
        type=budget_argument,
        required=True,
        help="memory budget: 24GiB, 512MiB (powers of 1024), 1.5GB (powers of 1000) or bytes",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set model.features=32 (repeatable)",
    )
    p.add_argument("--shape", default=None, help="image size instead of the data set's: HxW, ZxHxW")
    p.add_argument(
        "--coils", type=positive_int, default=None, help="number of coils (with --shape)"
    )
    p.add_argument(
        "--kind", choices=["2d", "3d", "cine"], default=None, help="data kind (default: data.kind)"
    )
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: train.device)")
    p.add_argument(
        "--strategies",
        default=None,
        help="comma-separated strategies to plan (default: every single-process strategy, "
        "those that declare a cost model)",
    )
    p.add_argument("--max-depth", type=positive_int, default=64, help="largest depth tried")
    p.add_argument("--max-batch", type=positive_int, default=256, help="largest batch tried")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the plan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan, print the explanation, optionally write JSON; 0 on success (errors raise)."""
    from gleam_mri.data.synthetic import parse_shape
    from gleam_mri.plan.planner import plan
    from gleam_mri.training.run_config import load_config

    cfg = load_config(args.config, args.set)
    strategies = None
    if args.strategies is not None:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    print(
        "measuring the network with short real training steps on "
        f"{args.device or cfg.train.device} (seconds on a GPU; minutes on a CPU at scanner "
        "sizes)...",
        file=sys.stderr,
        flush=True,
    )
    result = plan(
        cfg,
        args.budget,
        kind=args.kind,
        shape=parse_shape(args.shape),
        coils=args.coils,
        device=args.device or cfg.train.device,
        strategies=strategies,
        max_depth=args.max_depth,
        max_batch=args.max_batch,
    )
    print(result.explain())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        print(f"plan written to {args.json}")
    return 0
