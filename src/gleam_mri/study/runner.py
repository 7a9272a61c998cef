"""``run_study``: train every arm of the equal-memory study on the same data and seeds, score it.

Layout of ``out``::

    plan.json                          the budget, the cost model and each arm's setting
    runs/<arm>/memory.json             one measured training step of the arm (peak bytes)
    runs/<arm>/seed<k>/                an ordinary training run (last.pt, metrics.jsonl, ...)
    runs/<arm>/seed<k>/test.json       test-split metrics per volume and per slice (or why the
                                       run's training stopped: the study goes on)
    runs/<arm>/seed<k>/slice.npz       one test slice (target, reconstruction) for the figure

Every arm gets the same config (data, loss, optimizer and learning-rate rule, number of steps),
differing only in what :meth:`ArmPlan.overrides` sets, and the same seeds (``train.seed + k``).
A run with ``test.json`` is finished and skipped; one with a ``last.pt`` is resumed.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.atomic import atomic_write
from gleam_mri.config import Config, config_to_dict
from gleam_mri.devices import resolve_device
from gleam_mri.inference import evaluate_checkpoint
from gleam_mri.meters import LiveTensorMeter, storage_bytes
from gleam_mri.metrics import psnr, ssim
from gleam_mri.plan.costs import calibration_batch, measure_costs, measure_step
from gleam_mri.plan.planner import problem_from_config
from gleam_mri.study.arms import ARMS, ArmPlan, plan_arms, resolve_budget
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.errors import TrainingStopped
from gleam_mri.training.loop import fit
from gleam_mri.training.run import build_model_for, read_metrics_log
from gleam_mri.training.run_config import config_from_dict
from gleam_mri.training.strategies import strategy_from_config
from gleam_mri.units import parse_size

__all__ = ["arm_config", "measure_arm", "run_study"]


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def arm_config(cfg: Config, arm: ArmPlan, seed: int, out_dir: Path) -> Config:
    """The study config turned into ``arm`` with ``seed``, writing to ``out_dir``."""
    sets = [*arm.overrides(), f"train.seed={seed}", f"train.out_dir={out_dir}"]
    return config_from_dict(config_to_dict(cfg), sets)


def measure_arm(cfg: Config, arm: ArmPlan, problem: tuple, device: Any) -> dict[str, Any]:
    """Memory of one real training step of the arm (after a warm-up step), in bytes.

    ``planner_basis``: the planner's measured breakdown (parameters, gradients, optimizer state,
    batch, activations; on the CPU activations are the saved-for-backward bytes, as the planner
    predicts them). ``peak_bytes``: what the step really holds at its peak: on CUDA the
    allocator's ``max_memory_allocated``; on the CPU the tensors alive before the step plus the
    peak of tensors created during it (:class:`~gleam_mri.meters.live_tensors.LiveTensorMeter`,
    which also sees activations a checkpoint recomputes in the backward pass).
    """
    kind, shape, coils = problem
    arm_cfg = arm_config(cfg, arm, cfg.train.seed, Path(cfg.train.out_dir))
    batch_size = cfg.data.batch_size
    step = measure_step(
        arm_cfg,
        kind,
        shape,
        coils,
        device,
        strategy=arm.strategy,
        depth=arm.depth,
        batch=batch_size,
        **arm.settings,
    )
    out = {"planner_basis": step.breakdown.to_dict()}
    if step.cuda_peak_bytes is not None:
        return {**out, "peak_bytes": step.cuda_peak_bytes, "meter": "cuda max_memory_allocated"}
    net = build_model_for(arm_cfg, kind, torch.device(device))
    strategy = strategy_from_config(arm_cfg, net)
    batch = calibration_batch(kind, shape, coils, batch_size, device)
    strategy.train_step(batch)  # warm-up: the optimizer state exists from here on
    strategy.zero_grad()
    before = storage_bytes(net, strategy.optimizers, batch)
    with LiveTensorMeter() as meter:
        strategy.train_step(batch)
    return {**out, "peak_bytes": before + meter.peak_bytes, "meter": "live tensors (CPU)"}


def _score(ckpt: Path, test_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Test-split metrics per volume and per slice (data range: the volume's max)."""
    results = evaluate_checkpoint(ckpt, test_dir)
    slices = []
    for r in results:
        peak = float(r.target.max())
        for s in range(r.target.shape[0]):
            slices.append(
                {
                    "file": r.file,
                    "slice": s,
                    "PSNR": psnr(r.target[s], r.recon[s], peak),
                    "SSIM": ssim(r.target[s], r.recon[s], peak),
                }
            )
    first = results[0]
    middle = first.target.shape[0] // 2
    np.savez_compressed(
        run_dir / "slice.npz", target=first.target[middle], recon=first.recon[middle]
    )
    return {"volumes": [{"file": r.file, **r.metrics} for r in results], "slices": slices}


def _train_and_score(cfg: Config, run_dir: Path, test_dir: Path, progress: bool) -> dict:
    """Train (or resume) one run and score it; ``{"stopped": why}`` when its training stopped
    (a non-finite loss: the study goes on and reports it)."""
    scored = run_dir / "test.json"
    if scored.exists():
        return json.loads(scored.read_text())
    ckpt = run_dir / "last.pt"
    if not ckpt.exists() and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    if not ckpt.exists() or int(load_checkpoint(ckpt)["step"]) < cfg.train.steps:
        try:
            fit(cfg, resume=True, progress=progress)
        except TrainingStopped as err:
            result = {"stopped": str(err)}
            write_json(scored, result)
            return result
    result = _score(ckpt, test_dir, run_dir)
    write_json(scored, result)
    return result


def _curves(run_dir: Path) -> dict[str, Any]:
    """Validation PSNR against step and training seconds; median step time; total time."""
    records = read_metrics_log(run_dir) if (run_dir / "metrics.jsonl").exists() else []
    val = [r for r in records if "val/PSNR" in r]
    steps = [r["train/time/step_s"] for r in records if "train/time/step_s" in r]
    total = max((r.get("train/time/train_s", 0.0) for r in records), default=0.0)
    return {
        "val": [
            {"step": r["step"], "seconds": r.get("time/train_s", 0.0), "PSNR": r["val/PSNR"]}
            for r in val
        ],
        "median_step_s": statistics.median(steps) if steps else None,
        "train_s": total,
    }


def run_study(
    cfg: Config,
    budget: int | str,
    out: str | Path,
    *,
    seeds: int = 3,
    arms: Sequence[str] = ARMS,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Plan, train and score every arm; returns the raw results (see :mod:`.report`).

    ``ValueError`` before any training for a bad budget, arm list or seed count, a data folder
    without train/val/test files, or a budget the arms cannot be planned for
    (:func:`~gleam_mri.study.arms.plan_arms`).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    if isinstance(budget, str) and "@" not in budget:
        parse_size(budget)  # a bad size fails before the data is read
    root = Path(cfg.data.root)
    test_dir = root / "test"
    for split in (cfg.data.train_split, cfg.data.val_split, "test"):
        if not sorted((root / split).glob("*.h5")):
            raise ValueError(f"{root / split}: no .h5 files (the study needs train, val and test)")
    out = Path(out)
    dev = resolve_device(device)
    problem = problem_from_config(cfg)
    costs = measure_costs(cfg, *problem, dev)
    budget_bytes = resolve_budget(budget, costs, cfg.data.batch_size)
    plans = plan_arms(cfg, budget_bytes, costs, tuple(arms))
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "plan.json",
        {"budget": budget_bytes, "costs": costs.to_dict(), "arms": [p.to_dict() for p in plans]},
    )
    results: dict[str, Any] = {}
    for arm in plans:
        entry: dict[str, Any] = {"plan": arm.to_dict(), "seeds": {}}
        results[arm.name] = entry
        if not arm.trained:
            continue
        memory_file = out / "runs" / arm.name / "memory.json"
        if not memory_file.exists():
            memory_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(memory_file, measure_arm(cfg, arm, problem, dev))
        entry["memory"] = json.loads(memory_file.read_text())
        for k in range(seeds):
            seed = cfg.train.seed + k
            run_dir = out / "runs" / arm.name / f"seed{seed}"
            arm_cfg = arm_config(cfg, arm, seed, run_dir)
            arm_cfg.train.device = str(dev)
            if progress:
                print(f"study: arm {arm.name} ({arm.setting()}), seed {seed}")
            scored = _train_and_score(arm_cfg, run_dir, test_dir, progress)
            entry["seeds"][seed] = {**scored, **_curves(run_dir)}
    return {
        "budget": budget_bytes,
        "device": str(dev),
        "problem": {"kind": problem[0], "shape": list(problem[1]), "coils": problem[2]},
        "config": config_to_dict(cfg),
        "seeds": [cfg.train.seed + k for k in range(seeds)],
        "arms": results,
    }
