"""``fit``: the training loop, readable in one sitting.

build data, model and strategy -> (resume) -> for each step: batch, ``strategy.train_step``,
log (JSONL, TensorBoard, progress bar), validate, checkpoint (atomically) -> final checkpoint.

A resumed run continues bit-identically on CPU: batches depend only on (seed, step)
(:mod:`gleam_mri.training.batches`) and checkpoints hold the model, the strategy's optimizers and
schedulers, the RNG states and the step.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gleam_mri.config import Config, config_to_dict, save_config
from gleam_mri.data.datasets import open_dataset
from gleam_mri.models.builders import build_model
from gleam_mri.models.unrolled import Problem
from gleam_mri.recon.evaluate import evaluate, summarize
from gleam_mri.training.batches import StepBatches, step_loader, validation_loader
from gleam_mri.training.checkpoint import (
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gleam_mri.training.logging import RunLogger
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy
from gleam_mri.training.strategies.base import NonFiniteLossError, Strategy


class TrainingStopped(RuntimeError):
    """Training stopped early (non-finite loss); the last good checkpoint is kept."""


@dataclass
class Run:
    """Everything a training run is made of (also used by ``gleam eval`` and tests)."""

    cfg: Config
    net: torch.nn.Module
    strategy: Strategy
    device: torch.device
    out_dir: Path


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def strategy_options(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of the configured strategy (optimizer settings and its own options)."""
    opts: dict[str, Any] = {
        "optimizer": cfg.optim.name,
        "lr": cfg.optim.lr,
        "optimizer_kwargs": dict(cfg.optim.kwargs),
        "scheduler": cfg.optim.scheduler,
        "scheduler_kwargs": dict(cfg.optim.scheduler_kwargs),
        "grad_clip": cfg.optim.grad_clip,
        "amp": cfg.optim.amp,
    }
    s = cfg.strategy
    if s.name == "checkpoint":
        opts["every"] = s.checkpoint_every
    elif s.name == "greedy":
        opts.update(modules=s.modules, mode=s.mode)
        if s.mode == "sequential":
            n_modules = s.modules or cfg.model.unrolls
            opts["steps_per_module"] = s.steps_per_module or -(-cfg.train.steps // n_modules)
        if s.module_loss:
            opts["module_loss"] = build_loss(s.module_loss)
    return opts


def build_run(cfg: Config, kind: str) -> Run:
    """Model (seeded by ``cfg.train.seed``) and strategy for data of ``kind``."""
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    net = build_model(cfg.model, kind).to(device)
    strategy = build_strategy(
        cfg.strategy.name, net, build_loss(cfg.train.loss), **strategy_options(cfg)
    )
    return Run(cfg, net, strategy, device, Path(cfg.train.out_dir))


def checkpoint_state(run: Run, step: int, kind: str, extra: dict | None = None) -> dict:
    """The plain dict written to ``last.pt``."""
    return {
        "step": step,
        "kind": kind,
        "config": config_to_dict(run.cfg),
        "model_config": config_to_dict(run.cfg)["model"],
        "model": run.net.state_dict(),
        "strategy": run.strategy.state_dict(),
        "rng": rng_state(),
        **(extra or {}),
    }


def validate(run: Run, loader, loss_fn) -> tuple[dict[str, float], list]:
    """Validation loss and fastMRI metrics (means over volumes), and the per-volume results."""
    losses: list[float] = []

    def reconstruct(batch):
        image = run.strategy.reconstruct(batch)
        losses.append(float(loss_fn(image, batch)))
        return image

    results = evaluate(loader, reconstruct, device=run.device)
    summary = summarize(results)
    out = {f"val/{k}": v["mean"] for k, v in summary.items()}
    out["val/loss"] = sum(losses) / max(len(losses), 1)
    return out, results


def training_dataset(cfg: Config, folder: Path, deterministic_masks: bool = False):
    """The dataset of a split: slices / volumes, or readout slabs of 3D volumes (``data.slab``)."""
    if cfg.data.slab is None:
        return open_dataset(folder, cfg.data.mask, cfg.data.maps, deterministic_masks)
    from gleam_mri.data.slabs import SlabDataset
    from gleam_mri.physics.masks import build_mask_func

    return SlabDataset(
        folder,
        cfg.data.slab,
        cfg.data.slab_overlap,
        mask_func=build_mask_func(cfg.data.mask) if cfg.data.mask else None,
        maps=cfg.data.maps,
        deterministic_masks=deterministic_masks,
    )


def is_due(done: int, every: int, total: int) -> bool:
    """Whether a periodic action (``every`` steps; 0 = only at the end) runs after step ``done``."""
    return done == total or (every > 0 and done % every == 0)


def fit(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg``; returns the path of the last checkpoint. Raises :class:`TrainingStopped`."""
    if cfg.strategy.name == "pipeline":
        raise ValueError("strategy.name=pipeline runs under torchrun (see gleam train --help)")
    root = Path(cfg.data.root)
    train_set = training_dataset(cfg, root / cfg.data.train_split)
    kind = train_set.infos[0].kind
    val_set = training_dataset(cfg, root / cfg.data.val_split, deterministic_masks=True)
    run = build_run(cfg, kind)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run.out_dir / "last.pt"
    start = 0
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_compatible(ckpt, config_to_dict(cfg)["model"], ckpt_path, model=run.net)
        run.net.load_state_dict(ckpt["model"])
        run.strategy.load_state_dict(ckpt["strategy"])
        set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
    elif not resume and ckpt_path.exists():
        raise FileExistsError(
            f"{ckpt_path} exists: pass --resume to continue that run, or choose another "
            "train.out_dir (nothing was overwritten)"
        )
    save_config(cfg, run.out_dir / "config.yaml")
    loss_fn = build_loss(cfg.train.loss)
    batches = StepBatches(train_set, cfg.data.batch_size, cfg.train.seed)
    val_loader = validation_loader(val_set, cfg.data.batch_size, cfg.data.max_val_items)
    logger = RunLogger(run.out_dir, start, tensorboard=cfg.train.tensorboard)
    bar = tqdm(
        total=cfg.train.steps, initial=start, desc="training", unit="step", disable=not progress
    )
    step = start
    try:
        if start == 0 and cfg.train.val_every > 0:  # the untrained network, for reference
            metrics, results = validate(run, val_loader, loss_fn)
            logger.validation(0, metrics, results)
        loader = step_loader(batches, start, cfg.train.steps, cfg.data.num_workers)
        for step, batch in enumerate(loader, start=start):
            started = time.perf_counter()
            try:
                stats = run.strategy.train_step(batch.to(run.device))
            except NonFiniteLossError as err:
                last = f"{ckpt_path} (step {start})" if ckpt_path.exists() else "none written"
                raise TrainingStopped(
                    f"training stopped at step {step + 1}: {err}. The last good checkpoint is "
                    f"kept: {last}"
                ) from err
            stats["time/step_s"] = time.perf_counter() - started
            done = step + 1
            if is_due(done, cfg.train.log_every, cfg.train.steps):
                logger.scalars(done, stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4g}")
            if is_due(done, cfg.train.val_every, cfg.train.steps):
                metrics, results = validate(run, val_loader, loss_fn)
                images = is_due(done, cfg.train.image_every, cfg.train.steps)
                logger.validation(done, metrics, results if images else [])
                bar.write(
                    f"step {done}: val loss {metrics['val/loss']:.4g}  "
                    f"PSNR {metrics['val/PSNR']:.2f}  SSIM {metrics['val/SSIM']:.4f}"
                )
            if is_due(done, cfg.train.ckpt_every, cfg.train.steps):
                save_checkpoint(ckpt_path, checkpoint_state(run, done, kind))
                start = done
    finally:
        bar.close()
        logger.close()
    return ckpt_path


def load_run(path: str | Path, device: str = "auto") -> tuple[Run, dict]:
    """Model and strategy of a checkpoint, ready for reconstruction; returns (run, checkpoint)."""
    from gleam_mri.config import config_from_dict

    ckpt = load_checkpoint(path)
    for key in ("config", "model", "kind"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a gleam-mri training checkpoint (no {key!r} entry)")
    cfg = config_from_dict(ckpt["config"])
    cfg.train.device = device
    if cfg.strategy.name == "pipeline":  # reconstruction only: any single-process strategy does
        cfg.strategy.name = "greedy"
    run = build_run(cfg, ckpt["kind"])
    check_compatible(ckpt, config_to_dict(cfg)["model"], path, model=run.net)
    run.net.load_state_dict(ckpt["model"])
    run.net.eval()
    return run, ckpt


@torch.no_grad()
def reconstruct(run: Run, batch) -> torch.Tensor:
    """Complex image ``(B, *D)`` of a batch with a trained network (normalised scale)."""
    run.net.eval()
    return run.net(Problem.from_batch(batch.to(run.device)))


def read_metrics_log(out_dir: str | Path) -> list[dict]:
    """The JSONL metrics log of a run, as a list of records."""
    path = Path(out_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
