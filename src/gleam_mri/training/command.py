"""``gleam train``: train an unrolled network with a YAML config (one process, or one per
pipeline stage and replica under ``torchrun``)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any


def _strategies_help() -> str:
    """Each strategy with the options beside its name, from the strategies themselves."""
    from gleam_mri.training.strategies import STRATEGIES

    parts = []
    for name, cls in STRATEGIES.items():
        options = [f.name for f in fields(cls.Options)]
        parts.append(f"{name} ({', '.join(options)})" if options else name)
    return "; ".join(parts)


def add_parser(subparsers: Any) -> None:
    """Register ``train`` on ``gleam``'s subparsers."""
    p = subparsers.add_parser(
        "train",
        help="train an unrolled network (GLEAM greedy or a baseline strategy)",
        description="Train with a YAML config (see configs/); any field can be overridden with "
        "--set key.sub=value. Writes last.pt (best.pt with train.keep=best), config.yaml, "
        "metrics.jsonl and TensorBoard logs to train.out_dir. Strategies (strategy.name, "
        f"options beside it): {_strategies_help()}. Invertible training: inversion coupling on "
        "a model.invertible=true network, or fixed-point = MEL on the ordinary one (on PGD MEL "
        "needs model.dc.step_max and model.spectral_bound). Pipelined GLEAM (one process per "
        "stage and replica, world = stages x strategy.replicas): torchrun --standalone "
        "--nproc-per-node N -m gleam_mri.cli train CONFIG --set strategy.name=pipeline (see "
        "README). Weight selection: train.keep=best keeps the best validation's weights, "
        "train.patience stops after that many validations without improvement, train.average "
        "validates and keeps a moving average of the weights.",
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; 0 on success, 3 when training stopped (non-finite loss, full disk, out of memory)."""
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
