"""Which weights a run keeps, and when it stops: validation-loss tracking, early stopping and a
moving average of the weights (``train.keep``, ``train.patience``, ``train.average``).

:class:`WeightSelection` follows a run's validations. Each validation loss (``val/loss``) is
compared with the best so far; with ``keep="best"`` the weights of the best validation are
copied, and ``patience`` validations in a row without improvement stop training. With
``average > 0`` an exponential moving average of the weights is updated after every step
(decay ``min(average, (1 + t) / (10 + t))`` at step ``t``: TensorFlow's warm-up, so that at step
``t`` it spans about the last ``t / 9`` steps) and is what is validated and kept. Its state
(best loss, step and weights, the average, the counter, the history of validations) is saved
with the run's checkpoint, so a resumed run selects exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["WeightSelection", "update_average", "weights_swapped"]


def update_average(average: dict[str, torch.Tensor], net: torch.nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * weights`` for every floating-point tensor of
    ``net``'s state (other tensors are copied); an empty ``average`` starts at the weights."""
    for key, value in net.state_dict().items():
        if key not in average or not value.is_floating_point():
            average[key] = value.detach().clone()
        else:
            average[key].lerp_(value.detach(), 1.0 - decay)


@contextmanager
def weights_swapped(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the block with ``state`` loaded into ``net`` (nothing when empty), then restore."""
    if not state:
        yield
        return
    current = copy.deepcopy(net.state_dict())
    net.load_state_dict(state)
    try:
        yield
    finally:
        net.load_state_dict(current)


@dataclass
class WeightSelection:
    """The validation record of a run and the weights it keeps (see the module docstring).

    ``history``: one ``{"step", "val_loss"[, "train_loss"]}`` per validation (the mean training
    loss since the previous one). ``waited``: validations in a row without improvement.
    """

    keep: str = "last"  # "last" or "best"
    patience: int = 0  # 0: never stop early
    average: float = 0.0  # 0: validate and keep each step's own weights
    best_loss: float = math.inf
    best_step: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    averaged: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    history: list[dict[str, float]] = field(default_factory=list)
    waited: int = 0
    stopped: bool = False
    train_losses: list[float] = field(default_factory=list, repr=False)

    def after_step(self, net: torch.nn.Module, step: int, loss: float) -> None:
        """Record the training loss of ``step`` (1-based) and update the moving average."""
        self.train_losses.append(float(loss))
        if self.average:  # warmed up as TensorFlow's: early steps are not frozen in
            update_average(self.averaged, net, min(self.average, (1 + step) / (10 + step)))

    def record(self, net: torch.nn.Module, step: int, loss: float) -> bool:
        """Record the validation ``loss`` at ``step`` (the validated weights loaded in ``net``);
        returns whether it improved on the best. Sets :attr:`stopped` when patience ran out."""
        entry: dict[str, float] = {"step": step, "val_loss": float(loss)}
        if self.train_losses:
            entry["train_loss"] = float(sum(self.train_losses) / len(self.train_losses))
        self.history.append(entry)
        self.train_losses = []
        improved = loss < self.best_loss
        if improved:
            self.best_loss, self.best_step, self.waited = float(loss), step, 0
            if self.keep == "best":
                self.best_state = copy.deepcopy(net.state_dict())
        else:
            self.waited += 1
        self.stopped = self.patience > 0 and self.waited >= self.patience
        return improved

    def state_dict(self) -> dict[str, Any]:
        """Everything but the settings, for the run's checkpoint."""
        state = dataclasses.asdict(self)
        for key in ("keep", "patience", "average"):
            del state[key]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
