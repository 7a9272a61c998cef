"""A training run's parts and its checkpoint: ``Run``, the ``last.pt`` dict, loading for inference.

``last.pt`` is a plain dict (:func:`checkpoint_state`)::

    {"step", "kind", "config", "model_config", "model": net.state_dict(),
     "strategy": strategy.state_dict(), "rng": rng_state(), "train_seconds",
     "selection": the weight selection's state, "step_memory", "data": the data's identity}

A single-process run writes it every ``train.ckpt_every`` steps (:class:`LastCheckpoint`); a
pipelined run writes per-stage files and merges them into the same format at the end
(:mod:`gleam_mri.training.stage_checkpoints`). A run that keeps its best validation's weights
(``train.keep: best``) ends with ``best.pt``: the same dict with those weights, no strategy
state. ``gleam eval`` / ``gleam recon`` read either with :func:`gleam_mri.inference.load_run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from gleam_mri.atomic import remove_stale_temporaries
from gleam_mri.config import Config, config_to_dict
from gleam_mri.models.builders import build_model
from gleam_mri.training.checkpoint import (
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gleam_mri.training.selection import WeightSelection


class StrategyState(Protocol):
    """What a run's checkpoints need of its strategy (a
    :class:`~gleam_mri.training.strategies.base.Strategy`, which knows the run it trains)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Run:
    """Everything a training run is made of (``strategy`` is ``None`` for inference only).

    ``train_seconds``: time spent in training steps so far (validation and saving excluded),
    carried across resumes; ``selection``: the validations and the weights kept
    (``train.keep``, ``train.patience``, ``train.average``); ``step_memory``: the peak memory of
    the first training step (``{"bytes", "method"}``, with ``train.measure_memory``);
    ``identity``: the data's (:class:`~gleam_mri.training.data.TrainingData`);
    ``checkpoint``: the run's checkpoint once training finished.
    """

    cfg: Config
    net: torch.nn.Module
    strategy: StrategyState | None
    device: torch.device
    out_dir: Path
    kind: str
    train_seconds: float = 0.0
    selection: WeightSelection = field(default_factory=WeightSelection)
    step_memory: dict[str, Any] | None = None
    identity: Any = None
    checkpoint: Path | None = None


class CheckpointStore(Protocol):
    """How a run's state is saved and resumed (chosen by the strategy)."""

    def resume(self, resume: bool) -> int:
        """Load the saved state into the run when ``resume``; returns the step to start from.
        Refuses (``FileExistsError``) to start over a run's checkpoints without ``resume``."""

    def save(self, done: int) -> None:
        """Save the state after ``done`` steps."""

    def finish(self, done: int) -> Path:
        """After the last step: the checkpoint that ``gleam eval`` / ``gleam recon`` read."""

    def kept(self) -> str:
        """What is kept when training stops early (for the message)."""


def build_model_for(cfg: Config, kind: str, device: torch.device) -> torch.nn.Module:
    """The configured network for data of ``kind``, seeded by ``cfg.train.seed``, on ``device``."""
    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model, kind).to(device)


def checkpoint_state(
    run: Run,
    step: int,
    model: dict[str, torch.Tensor] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The plain dict written to ``last.pt`` (the run's own model and strategy by default)."""
    config = config_to_dict(run.cfg)
    return {
        "step": step,
        "kind": run.kind,
        "config": config,
        "model_config": config["model"],
        "model": run.net.state_dict() if model is None else model,
        "strategy": run.strategy.state_dict() if strategy is None else strategy,
        "rng": rng_state(),
        "train_seconds": run.train_seconds,
        "selection": run.selection.state_dict(),
        "step_memory": run.step_memory,
        "data": run.identity,
    }


def kept_state(run: Run) -> dict[str, Any]:
    """``best.pt``: the weights of the best validation (the network's own where none was kept)
    at that step, no strategy state: an ordinary checkpoint for ``gleam recon`` / ``eval``."""
    selection = run.selection
    model = selection.best_state or run.net.state_dict()
    return checkpoint_state(run, selection.best_step, model=model, strategy={})


class LastCheckpoint:
    """``train.out_dir/last.pt``: model, strategy state and RNG states, written atomically."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path = run.out_dir / "last.pt"
        self.saved: int | None = None

    def resume(self, resume: bool) -> int:
        if self.path.exists() and not resume:
            raise FileExistsError(
                f"{self.path} exists: pass --resume to continue that run, or choose another "
                "train.out_dir (nothing was overwritten)"
            )
        remove_stale_temporaries(self.path)  # left by a run killed while writing a checkpoint
        if not self.path.exists():
            return 0
        run = self.run
        ckpt = load_checkpoint(self.path)
        check_compatible(ckpt, config_to_dict(run.cfg)["model"], self.path, model=run.net)
        check_identity(ckpt.get("data"), run.identity, self.path)
        run.net.load_state_dict(ckpt["model"])
        run.strategy.load_state_dict(ckpt["strategy"])
        set_rng_state(ckpt["rng"])
        run.train_seconds = float(ckpt.get("train_seconds", 0.0))
        run.selection.load_state_dict(ckpt.get("selection", {}))
        run.step_memory = ckpt.get("step_memory")
        self.saved = int(ckpt["step"])
        return self.saved

    def save(self, done: int) -> None:
        save_checkpoint(self.path, checkpoint_state(self.run, done))
        self.saved = done

    def finish(self, done: int) -> Path:
        if self.run.cfg.train.keep != "best":
            return self.path
        best = self.path.with_name("best.pt")
        save_checkpoint(best, kept_state(self.run))
        return best

    def kept(self) -> str:
        if self.saved is None:
            return "The last good checkpoint is kept: none written"
        return f"The last good checkpoint is kept: {self.path} (step {self.saved})"


def check_identity(saved: Any, current: Any, path: Path) -> None:
    """``ValueError`` when a checkpoint was written on other data than this run's (naming the
    parts that differ); checkpoints without an identity, or runs without one, pass."""
    if saved is None or current is None or saved == current:
        return
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(k for k in {**saved, **current} if saved.get(k) != current.get(k))
        other = ", ".join(keys)
    else:
        other = "data"
    raise ValueError(
        f"{path}: written by a run with other {other}; resume with the same data and options, "
        "or choose another output folder"
    )


def read_metrics_log(out_dir: str | Path, name: str = "metrics.jsonl") -> list[dict]:
    """The JSONL metrics log of a run, as a list of records."""
    path = Path(out_dir) / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
