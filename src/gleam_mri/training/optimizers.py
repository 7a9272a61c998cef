"""One optimizer (and scheduler) per parameter group: build, clip, check, step, save.

Every training strategy, single-process or pipelined, updates its parameters through a
:class:`ModuleOptimizers`: end to end has one group (the whole network), greedy one group per
module it owns. A step over the groups ``active``::

    clip(active)  -> every gradient norm checked before the first update (NonFiniteLossError)
    step(active)  -> optimizer.step(), then scheduler.step() (once per optimizer step)

Optimizers and schedulers are named by their ``torch.optim`` / ``torch.optim.lr_scheduler``
class (``"Adam"``, ``"StepLR"``), as in the config's ``optim`` section.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from gleam_mri.config import optimizer_names, scheduler_names
from gleam_mri.training.errors import NonFiniteLossError

__all__ = [
    "ModuleOptimizers",
    "build_optimizer",
    "build_scheduler",
]

LRScheduler = torch.optim.lr_scheduler.LRScheduler


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, kwargs: dict[str, Any] | None = None
) -> torch.optim.Optimizer:
    """``torch.optim.<name>(params, lr=lr, **kwargs)``; ``ValueError`` for an unknown name."""
    if name not in optimizer_names():
        raise ValueError(f"unknown optimizer {name!r}; torch.optim provides {optimizer_names()}")
    cls = getattr(torch.optim, name)
    params = list(params)
    if not params:
        raise ValueError(f"cannot build optimizer {name}: no parameters to optimise")
    try:
        return cls(params, lr=lr, **(kwargs or {}))
    except TypeError as err:
        raise TypeError(f"optimizer {name}: bad arguments {kwargs}: {err}") from err


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, kwargs: dict[str, Any] | None = None
) -> LRScheduler:
    """``torch.optim.lr_scheduler.<name>(optimizer, **kwargs)``, stepped once per optimizer step.

    ``ValueError`` for an unknown name and for ``ReduceLROnPlateau`` (it needs a validation
    metric, not a per-step call).
    """
    if name == "ReduceLROnPlateau":
        raise ValueError("scheduler ReduceLROnPlateau needs a validation metric; not supported")
    if name not in scheduler_names():
        known = scheduler_names()
        raise ValueError(f"unknown scheduler {name!r}; torch.optim.lr_scheduler provides {known}")
    cls = getattr(torch.optim.lr_scheduler, name)
    try:
        return cls(optimizer, **(kwargs or {}))
    except TypeError as err:
        raise TypeError(f"scheduler {name}: bad arguments {kwargs}: {err}") from err


class ModuleOptimizers:
    """``torch.optim.<optimizer>`` (and optionally a scheduler) for each parameter group.

    Args:
        groups: the parameters of each optimizer (e.g. one list per greedy module).
        labels: metric suffix of each group (``"module_3"``); ``None``: ``grad_norm`` alone for
            one group, ``grad_norm/<index>`` otherwise.
        optimizer, lr, optimizer_kwargs: ``torch.optim.<optimizer>(params, lr=lr, **kwargs)``.
        scheduler, scheduler_kwargs: optional ``torch.optim.lr_scheduler.<scheduler>``.
        grad_clip: clip each group's gradient norm to this value (``None``: no clipping).
    """

    def __init__(
        self,
        groups: Sequence[Iterable[nn.Parameter]],
        labels: Sequence[str] | None = None,
        *,
        optimizer: str = "Adam",
        lr: float = 1e-3,
        optimizer_kwargs: dict | None = None,
        scheduler: str | None = None,
        scheduler_kwargs: dict | None = None,
        grad_clip: float | None = None,
    ) -> None:
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.optimizers = [build_optimizer(optimizer, g, lr, optimizer_kwargs) for g in groups]
        self.schedulers = (
            []
            if scheduler is None
            else [build_scheduler(scheduler, opt, scheduler_kwargs) for opt in self.optimizers]
        )
        self.labels = list(labels) if labels is not None else [str(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.optimizers)

    def parameters(self, index: int | None = None) -> list[nn.Parameter]:
        """The parameters of group ``index`` (of every group when ``None``)."""
        chosen = self.optimizers if index is None else [self.optimizers[index]]
        return [p for opt in chosen for group in opt.param_groups for p in group["params"]]

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def lr(self, index: int = 0) -> float:
        """The current learning rate of group ``index``."""
        return float(self.optimizers[index].param_groups[0]["lr"])

    def clip(self, active: Sequence[int], where: str) -> dict[str, float]:
        """Clip the gradient norm of each active group; returns the norms before clipping.

        Every norm is checked before any update: a non-finite one zeroes all gradients and raises
        :class:`NonFiniteLossError` (``where`` says which strategy and step, for the message).
        """
        if self.grad_clip is None:
            return {}
        norms = {}
        for index in active:
            norm = float(torch.nn.utils.clip_grad_norm_(self.parameters(index), self.grad_clip))
            key = "grad_norm" if len(self) == 1 else f"grad_norm/{self.labels[index]}"
            if not math.isfinite(norm):
                self.zero_grad()
                raise NonFiniteLossError(
                    f"{where}: non-finite gradient norm ({key}); no parameter was updated for "
                    "this batch"
                )
            norms[key] = norm
        return norms

    def step(self, active: Sequence[int]) -> None:
        """``optimizer.step()`` then ``scheduler.step()`` for each active group."""
        for index in active:
            self.optimizers[index].step()
            if self.schedulers:
                self.schedulers[index].step()

    def state_dict(self) -> dict[str, list]:
        """``{"optimizers": [...], "schedulers": [...]}``: plain dicts for ``torch.save``."""
        return {
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [sch.state_dict() for sch in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any], who: str) -> None:
        """Restore :meth:`state_dict`; ``ValueError`` (prefixed by ``who``) for another layout."""
        for key, mine in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
            theirs = state.get(key, [])
            if len(theirs) != len(mine):
                raise ValueError(
                    f"{who}: the state has {len(theirs)} {key}, this strategy has {len(mine)} "
                    "(different modules or scheduler setting?)"
                )
        for opt, saved in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for sch, saved in zip(self.schedulers, state.get("schedulers", []), strict=True):
            sch.load_state_dict(saved)
