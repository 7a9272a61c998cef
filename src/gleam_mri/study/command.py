"""``gleam study CONFIG --budget 2GiB --out DIR``: the equal-memory study in one command.

:func:`add_parser` registers the subcommand; :func:`run` executes it. The work is done by
:func:`gleam_mri.study.runner.run_study` and :func:`gleam_mri.study.report.write_outputs`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gleam_mri.plan.command import budget_argument, positive_int


def _study_budget(text: str) -> int | str:
    """A size (``2GiB``) or ``e2e@N`` (what end to end needs at N iterations, on this device)."""
    if text.strip().lower().startswith("e2e@"):
        return text
    return budget_argument(text)


DESCRIPTION = """\
Train the strategies side by side under one memory budget and compare image quality, time and
memory. The config names the deep network (model.unrolls) and the data (data.root with train/,
val/ and test/). The memory planner measures the network on this device and chooses per arm:

  e2e-fit            end to end at the deepest network that fits the budget
  greedy             GLEAM at the deep network, the fewest modules that fit
  checkpoint         gradient checkpointing at the deep network, the largest segments that fit
  invertible         MEL at the deep network: invertible training of the same network, each
                     iteration inverted by fixed-point iteration (strategy.fixed_point_iters);
                     on PGD it converges only on the bounded network, given to every arm with
                     --set model.dc.step_max=0.5 --set model.spectral_bound=0.25
  invertible-coupling  exact invertible training, on the coupled network (another architecture)
  greedy-same-depth  GLEAM at e2e-fit's depth, as many modules as the greedy arm (>= 2):
                     what decoupling costs at equal depth
  e2e-deep           end to end at the deep network (reference, outside the budget)

Every arm trains the same number of steps on the same data with the same seeds, optimizer and
learning rate; an arm that cannot fit is reported, not trained. Writes study.md (table, settings,
machine), study.json, figures (PSNR vs memory, validation PSNR vs time, a test slice) and each
arm's runs under --out. Started again, it skips finished runs and resumes unfinished ones.
"""

EPILOG = """\
examples:
  gleam study configs/study-2d.yaml --budget 10MiB --out runs/study-2d
  gleam study configs/study-2d.yaml --budget e2e@3 --out runs/study-2d --device cuda
  gleam study configs/study-2d.yaml --budget 12MiB --out runs/s --arms e2e-fit greedy --seeds 2
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``study`` (with its options and ``func=run``) on ``gleam``'s subparsers."""
    from gleam_mri.study.arms import ARMS

    p = subparsers.add_parser(
        "study",
        help="the equal-memory study: every strategy under one budget, quality / time / memory",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="YAML config: the deep network and the data")
    p.add_argument(
        "--budget",
        type=_study_budget,
        required=True,
        help="memory budget: a size (2GiB, 500MB) or e2e@N, halfway between what end to end "
        "needs at N and N+1 iterations on this device (e2e-fit then gets N)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per arm (default: 3)")
    p.add_argument(
        "--arms", nargs="+", default=list(ARMS), metavar="ARM", help="arms to run (default: all)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gleam_mri.study.report import write_outputs
    from gleam_mri.study.runner import run_study
    from gleam_mri.training.run_config import load_config

    cfg = load_config(args.config, args.set)
    try:
        results = run_study(
            cfg,
            args.budget,
            args.out,
            seeds=args.seeds,
            arms=args.arms,
            device=args.device,
            progress=not args.quiet,
        )
    except ValueError as err:
        print(f"gleam study: {err}", file=sys.stderr)
        return 2
    command = shlex.join(["gleam", "study", *sys.argv[2:]] if sys.argv[1:2] == ["study"] else [])
    report = write_outputs(results, args.out, command or f"gleam study {args.config}")
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report}, {args.out / 'study.json'}")
    return 0
