"""Resumable ``gleam adapt``: the training state, saved at every validation.

The state lives in ``OUT/adapt-train/last.pt``.

A scan-specific run that is killed (a pre-empted job, a node lost) continues from its newest
validation with ``gleam adapt ... --resume`` and ends bit-identical to an uninterrupted run on
CPU: the training splits depend only on the seed and the step, and the state holds everything
else (weights, optimizers, the best weights so far, the validation history, the early-stopping
counter, the RNGs). The file is an ordinary gleam checkpoint (``gleam recon`` reads it) written
atomically; it is removed once the outputs are written, so a finished run leaves only
``adapt.pt`` and ``adapt.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gleam_mri.atomic import remove_stale_temporaries
from gleam_mri.config import Config, config_to_dict
from gleam_mri.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gleam_mri.training.strategies import Strategy

STATE_FOLDER = "adapt-train"


def state_path(out: str | Path) -> Path:
    """Where ``gleam adapt -o OUT`` keeps its training state: ``OUT/adapt-train/last.pt``."""
    return Path(out) / STATE_FOLDER / "last.pt"


@dataclass
class Progress:
    """Where a scan-specific run stands after ``step`` steps (all of it is saved)."""

    step: int = 0
    best_loss: float = float("inf")
    best_step: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    average: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # EMA weights
    history: list[dict[str, float]] = field(default_factory=list)
    waited: int = 0  # validations in a row without improvement
    seconds: float = 0.0  # training time so far
    memory_bytes: int = 0
    memory_method: str = ""
    finished: bool = False  # training ended (step limit or early stop)


class AdaptCheckpoint:
    """Save and restore :class:`Progress` plus the network, strategy and RNG states at ``path``.

    ``identity`` (the scan, the config and the schedule) is stored with the state; resuming
    under another identity is refused, so a ``--resume`` never mixes two runs.
    """

    def __init__(self, path: str | Path, identity: dict[str, Any]) -> None:
        self.path, self.identity = Path(path), identity

    def resume(self, resume: bool, net: torch.nn.Module, strategy: Strategy) -> Progress | None:
        """The saved progress loaded into ``net`` and ``strategy`` (``None``: start afresh).

        Raises ``FileExistsError`` when a state exists and ``resume`` is false (nothing is
        overwritten) and ``ValueError`` when it belongs to another scan, config or schedule."""
        if self.path.exists() and not resume:
            raise FileExistsError(
                f"{self.path} holds an interrupted gleam adapt run: pass --resume to continue "
                "it, or choose another --out (nothing was overwritten)"
            )
        remove_stale_temporaries(self.path)
        if not self.path.exists():
            return None
        ckpt = load_checkpoint(self.path)
        saved = ckpt.get("adapt", {}).get("identity")
        if saved != self.identity:
            changed = sorted(k for k in self.identity if (saved or {}).get(k) != self.identity[k])
            raise ValueError(
                f"{self.path}: written by a gleam adapt run with other {', '.join(changed)}; "
                "resume with the same input and options, or choose another --out"
            )
        net.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
        set_rng_state(ckpt["rng"])
        fields = ckpt["adapt"]["progress"]
        return Progress(**{f.name: fields[f.name] for f in dataclasses.fields(Progress)})

    def save(
        self, progress: Progress, net: torch.nn.Module, strategy: Strategy, cfg: Config, kind: str
    ) -> None:
        """Write the state after ``progress.step`` steps (atomically)."""
        config = config_to_dict(cfg)
        save_checkpoint(
            self.path,
            {
                "step": progress.step,
                "kind": kind,
                "config": config,
                "model_config": config["model"],
                "model": net.state_dict(),
                "strategy": strategy.state_dict(),
                "rng": rng_state(),
                "train_seconds": progress.seconds,
                "adapt": {"identity": self.identity, "progress": dataclasses.asdict(progress)},
            },
        )

    def remove(self) -> None:
        """Delete the state once the run's outputs are written."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # not empty (a user's file) or already gone
            pass
