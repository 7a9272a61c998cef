"""Scan-specific ("zero-shot") training: an unrolled network fitted to one scan's own k-space.

ZS-SSDU (Yaman, Hosseini and Akcakaya, ICLR 2022): the measured samples ``Omega`` of every item
are split once into a validation set ``Gamma`` and a training pool; every step splits the pool
afresh into the network input ``Theta`` and the loss set ``Lambda`` (:mod:`gleam_mri.selfsup`).
Every ``val_every`` steps the network, fed the whole pool, is scored on ``Gamma``; the weights of
the best validation step are kept and training stops when ``patience`` validations in a row did
not improve on it. The reconstruction then feeds the network every measured sample ``Omega``.

Training is the project's one driver (:func:`gleam_mri.training.loop.train`) on the scan's splits
(:class:`Splits`, a step-indexed source): its strategies (a deep network trains greedily, GLEAM:
one module's activations at a time, when the whole network would not fit), its weight selection
(``train.keep: best``, ``patience``, ``average``), its checkpoints and resume, and the memory of
the first training step (CUDA ``max_memory_allocated``, or on CPU the live tensor bytes).
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.adapt.floor import (
    ITEMS,
    Comparison,
    blend,
    choose_cs_weight,
    compare_with_cs,
    cs_images,
    volume_of,
)
from gleam_mri.adapt.scan import Scan, volume_mask
from gleam_mri.adapt.splits import Splits
from gleam_mri.atomic import atomic_write
from gleam_mri.config import Config, config_to_dict
from gleam_mri.data.datasets import evenly_spread
from gleam_mri.data.slabs import reconstruct_volume_in_slabs
from gleam_mri.devices import resolve_device
from gleam_mri.inference import load_run, output_crop
from gleam_mri.recon.cs import choose_lambda_for
from gleam_mri.schema import at_least
from gleam_mri.selfsup.split import HELD_OUT_LINES, SplitError
from gleam_mri.training.checkpoint import rng_state, save_checkpoint
from gleam_mri.training.data import source_data, splitter_from_config
from gleam_mri.training.loop import train
from gleam_mri.training.run import build_model_for
from gleam_mri.training.run_config import config_from_dict
from gleam_mri.training.strategies import Strategy

STATE_FOLDER = "adapt-train"
RUN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.jsonl")  # what the driver writes

# The network gleam adapt trains when no config or checkpoint says otherwise: a MoDL-style
# unrolled network (conjugate-gradient data consistency, as ZS-SSDU) with a small ResNet, sized
# so that gleam adapt on a 2D 8-coil 256 x 256 slice takes at most 5 minutes on two CPU cores
# (16 features, 200 steps: benchmarks/adapt_time.py; 32 features and 300 steps took 10 minutes
# for 1.2 dB more there, which --large buys back); greedy over its iterations (GLEAM).
# Held-out sets are whole lines of a line mask, drawn uniformly (SPLITS): on the real brain with
# random lines (32 features, 300 steps) this kept 28.59 / 23.18 dB at 4x / 8x against 28.18 /
# 21.66 with SSDU's Gaussian points, whose validation loss kept falling at 8x while the image got
# worse (benchmarks/adapt_probe.py, RESULTS).
SPLITS: dict[str, Any] = dict(HELD_OUT_LINES)
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "adapt",
    "model": {
        "name": "modl",
        "unrolls": 6,
        "regularizer": "resnet",
        "features": 16,
        "blocks": 3,
        "dc": {"cg_iters": 6},
    },
    "strategy": {"name": "greedy"},
    "optim": {"name": "Adam", "lr": 1e-3, "grad_clip": 1.0},
    "train": {"supervision": "self", "loss": "l1"},
    "ssdu": SPLITS,
}


# gleam adapt --large: a deeper network trained longer on two splits per step (about 5x the
# time); on the real brain it kept 29.22 / 23.65 dB at 4x / 8x (RESULTS, adapt_probe.py)
LARGE_OVERRIDES = ("model.unrolls=8", "model.dc.cg_iters=8", "model.features=32")
LARGE_SCHEDULE: dict[str, int] = {"batch_size": 2, "steps": 400, "patience": 20}


@dataclass
class AdaptOptions:
    """The scan-specific training schedule (see the module docstring)."""

    steps: int = field(default=200, metadata=at_least(1))  # at most
    val_every: int = field(default=10, metadata=at_least(1))
    patience: int = field(default=10, metadata=at_least(1))  # validations without improvement
    val_fraction: float = 0.2  # Gamma: share of the measured samples held out for validation
    fraction: float = 0.4  # Lambda: share of the training pool held out for the loss per step
    batch_size: int = field(default=1, metadata=at_least(1))
    max_val_items: int = field(default=8, metadata=at_least(1))
    # decay of the moving average of the weights that is validated and kept (0: off); at step t
    # the decay is min(average, (1 + t) / (10 + t)), so it averages about the last t / 9 steps
    average: float = 0.0
    seed: int = 0
    # compare with l1-wavelet CS on the held-out set and keep the better (adapt/floor.py)
    cs: bool = True


@dataclass
class AdaptResult:
    """What :func:`adapt` made: the magnitude volume and how it got there."""

    volume: np.ndarray  # (S, H, W) 2D, (S, Z|T, H, W) 3D / cine, at the file's scale
    best_step: int  # the step whose weights were kept (0: the untrained / initial network)
    steps: int  # steps trained
    stopped_early: bool
    history: list[dict[str, float]]  # {"step", "val_loss", "train_loss"} per validation
    train_seconds: float
    memory_bytes: int  # peak memory of one training step
    memory_method: str
    strategy: str
    config: Config
    state: dict[str, torch.Tensor] | None = field(repr=False)  # None: no network was trained
    comparison: Comparison | None = None  # the network against CS (None: not compared)
    untrained: str = ""  # why no network was trained and CS was written ("": one was)


def adapt_config(init: str | Path | None, device: str) -> tuple[Config, dict | None]:
    """The config to train: :data:`DEFAULT_CONFIG`, or the ``--init`` checkpoint's (and its
    weights) with self-supervision switched on and adapt's held-out sets (:data:`SPLITS`)."""
    if init is None:
        cfg = config_from_dict(DEFAULT_CONFIG)
        cfg.train.device = device
        return cfg, None
    run, _ = load_run(init, device)
    cfg = run.cfg
    cfg.train.supervision = "self"
    for key, value in SPLITS.items():
        setattr(cfg.ssdu, key, value)
    for key in ("module_loss",):  # image losses of the supervised run need a target
        cfg.strategy.options.pop(key, None)
    return cfg, {"kind": run.kind, "model": run.net.state_dict()}


def state_path(out: str | Path) -> Path:
    """Where ``gleam adapt -o OUT`` keeps its training state: ``OUT/adapt-train/last.pt``."""
    return Path(out) / STATE_FOLDER / "last.pt"


def remove_state(out: str | Path) -> None:
    """Delete the training state once the outputs are written (the folder too, when nothing else
    is in it)."""
    folder = Path(out) / STATE_FOLDER
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (a user's file) or already gone
        folder.rmdir()


def driver_config(cfg: Config, options: AdaptOptions, folder: Path) -> Config:
    """``cfg`` with the schedule of ``options`` for the training driver: validate (and save the
    state) every ``val_every`` steps, keep the best validation's weights, stop after ``patience``
    validations without improvement, average the weights if asked, measure the first step."""
    cfg = copy.deepcopy(cfg)
    train = cfg.train
    train.steps, train.val_every = options.steps, options.val_every
    train.ckpt_every = train.log_every = options.val_every
    train.image_every, train.tensorboard = 0, False
    train.keep, train.patience, train.average = "best", options.patience, options.average
    train.measure_memory, train.out_dir = True, str(folder)
    cfg.data.batch_size = options.batch_size
    return cfg


def adapt(
    scan: Scan,
    cfg: Config,
    options: AdaptOptions,
    initial: dict | None = None,
    progress: bool = True,
    *,
    out: str | Path | None = None,
    identity: Any = None,
    resume: bool = False,
    on_validation: Callable[[Strategy, float], None] | None = None,
) -> AdaptResult:
    """Train ``cfg``'s network on ``scan`` alone and reconstruct it (module docstring).

    ``initial``: ``{"kind", "model"}`` weights to start from (fine-tuning), else a fresh network
    seeded by ``cfg.train.seed``. ``out``: the output folder, whose ``adapt-train/`` holds the
    training state at every validation (:func:`state_path`; ``None``: a temporary folder);
    ``identity`` is stored with it, and ``resume`` continues from it only under the same.
    ``on_validation(strategy, val_loss)`` is called after every validation, with the validated
    weights loaded (``benchmarks/adapt_probe.py`` scores them against a reference). Raises
    ``ValueError`` when ``initial`` was trained on another kind of data, ``FileExistsError``
    when a state exists and ``resume`` is false (nothing is overwritten). A 2D or cine scan
    with too few measured lines to split for training gets CS instead (:func:`cs_instead`).
    """
    if initial is not None and initial["kind"] != scan.kind:
        raise ValueError(
            f"the --init checkpoint was trained on {initial['kind']} data; {scan.path} holds "
            f"{scan.kind} data"
        )
    try:
        splits = Splits(scan.items, options, splitter_from_config(cfg.ssdu))
    except SplitError as err:
        if not options.cs or scan.volumes is not None:
            raise
        return cs_instead(scan, cfg, options, str(err))
    data = source_data(scan.kind, splits.training_batch, splits.validation_items(), identity)
    hook = None
    if on_validation is not None:
        hook = lambda run, metrics: on_validation(run.strategy, metrics["val/loss"])  # noqa: E731
    with contextlib.ExitStack() as stack:
        if out is None:
            out = stack.enter_context(tempfile.TemporaryDirectory())
        if state_path(out).exists() and not resume:
            raise FileExistsError(
                f"{state_path(out)} holds an interrupted gleam adapt run: pass --resume to "
                "continue it, or choose another --out (nothing was overwritten)"
            )
        cfg = driver_config(cfg, options, state_path(out).parent)
        net = build_model_for(cfg, scan.kind, resolve_device(cfg.train.device))
        if initial is not None:
            net.load_state_dict(initial["model"])
        run = train(cfg, resume, progress, data=data, net=net, on_validation=hook)
    selection = run.selection
    run.net.load_state_dict(selection.best_state)
    memory = run.step_memory or {"bytes": 0, "method": ""}
    comparison = None
    if not options.cs or scan.volumes is not None:  # CS over whole 3D volumes: not wired in
        volume = reconstruct_scan(run.strategy, scan, run.device)
    else:  # never below CS: the blend of network and CS with the lowest held-out loss
        validation = splits.validation_items()
        choice = choose_cs_weight(validation)
        comparison = compare_with_cs(run.strategy, validation, choice, run.device)
        volume = volume_of(scan, final_images(run.strategy, scan, comparison, run.device))
    return AdaptResult(
        volume=volume,
        best_step=selection.best_step,
        steps=int(selection.history[-1]["step"]),
        stopped_early=selection.stopped,
        history=selection.history,
        train_seconds=run.train_seconds,
        memory_bytes=int(memory["bytes"]),
        memory_method=memory["method"],
        strategy=cfg.strategy.name,
        config=cfg,
        state=selection.best_state,
        comparison=comparison,
    )


def cs_instead(scan: Scan, cfg: Config, options: AdaptOptions, why: str) -> AdaptResult:
    """The result of a 2D / cine scan whose samples cannot be split for training (``why``): no
    network, CS of every item, its weight chosen on held-out lines of up to :data:`ITEMS` items
    when these can spare some (CS holds out fewer than training needs), else the default."""
    choice = choose_lambda_for([scan.items[i] for i in evenly_spread(len(scan.items), ITEMS)])
    losses = {} if choice.loss is None else {0.0: choice.loss}
    volume = volume_of(scan, cs_images(scan.items, choice.lam))
    return AdaptResult(
        volume, 0, 0, False, [], 0.0, 0, "", cfg.strategy.name, cfg, None,
        Comparison(0.0, losses, choice), untrained=why,
    )  # fmt: skip


def final_images(
    strategy: Strategy, scan: Scan, comparison: Comparison, device: torch.device
) -> list[torch.Tensor]:
    """The complex image ``(1, *D)`` of every item of a 2D / cine scan from all its measured
    samples: the comparison's blend of the network (``strategy``'s) and CS."""
    share = comparison.share
    cs = cs_images(scan.items, comparison.cs.lam) if share < 1 else [None] * len(scan.items)
    if share == 0:
        return cs
    out = []
    for item, image in zip(scan.items, cs, strict=True):
        network = strategy.reconstruct(item.to(device)).cpu()
        out.append(blend(network, image, share))
    return out


def reconstruct_scan(strategy: Strategy, scan: Scan, device: torch.device) -> np.ndarray:
    """Magnitude of every item fed all its measured samples, at the file's scale:
    ``(S, H, W)`` (2D), ``(S, T, H, W)`` (cine), ``(S, Z, H, W)`` (3D, slab by slab)."""
    if scan.volumes is not None:
        out = []
        for volume in scan.volumes:
            image = reconstruct_volume_in_slabs(
                strategy.reconstruct,
                volume.kspace[0],
                volume_mask(volume)[0],
                volume.maps[0] if scan.volume_maps else None,
                min(scan.slab, volume.kspace.shape[-2]),
                scan.overlap,
                device=device,
            )
            out.append(volume.denormalize(image[None].abs().cpu())[0].numpy())
        return np.stack(out).astype(np.float32)
    out = []
    for item in scan.items:
        image = output_crop(strategy.reconstruct(item.to(device)).cpu(), item)
        out.append(item.denormalize(image.abs())[0].numpy())
    return np.stack(out).astype(np.float32)


def summary(result: AdaptResult, source: str) -> dict[str, Any]:
    """The ``adapt.json`` record of a result (no arrays)."""
    return {
        "input": source,
        "best_step": result.best_step,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "memory_bytes": result.memory_bytes,
        "memory_method": result.memory_method,
        "strategy": result.strategy,
        "history": result.history,
        "config": config_to_dict(result.config),
        "untrained": result.untrained or None,  # why no network was trained (CS was written)
        # which image was written (adapt.pt holds the network either way)
        "compared_with_cs": None if result.comparison is None else result.comparison.to_dict(),
    }


def save_adapted(
    result: AdaptResult,
    scan: Scan,
    out: str | Path,
    source: str,
    seconds: dict[str, float] | None = None,
    init: str = "scratch",
) -> list[Path]:
    """Write ``OUT/adapt.pt`` (the kept weights; ``gleam recon`` reads it; not when no network
    was trained) and ``adapt.json`` (with ``seconds``: the wall time of the run's parts, when
    given, and ``init``: where the starting weights came from)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config_to_dict(result.config)
    ckpt = out / "adapt.pt"
    if result.state is not None:
        save_checkpoint(
            ckpt,
            {
                "step": result.best_step,
                "kind": scan.kind,
                "config": config,
                "model_config": config["model"],
                "model": result.state,
                "strategy": {},
                "rng": rng_state(),
                "train_seconds": result.train_seconds,
            },
        )
    record = out / "adapt.json"
    maps = [{"method": c.chosen, "heldout_losses": c.losses} for c in scan.maps_choices]
    with atomic_write(record, "w", encoding="utf-8") as file:
        extra = {"coil_maps": maps or "file", "seconds": seconds or {}, "init": init}
        json.dump({**summary(result, source), **extra}, file, indent=2)
    return [ckpt, record] if result.state is not None else [record]
