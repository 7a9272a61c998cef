"""The :class:`Strategy` base: optimizers by name, clipping, mixed precision, non-finite checks.

A strategy owns how gradients of an :class:`~gleam_mri.models.unrolled.UnrolledNet` are computed
(end to end, checkpointed, invertible, greedy) and the optimizers that apply them; it never changes
the model's code. One training step is::

    zero grads -> forward_backward(batch) (losses, .grad; raises NonFiniteLossError before any
    update) -> clip each optimizer's gradient norm -> optimizer.step -> scheduler.step
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.training.losses import LossFn


class NonFiniteLossError(RuntimeError):
    """A loss was NaN or infinite; raised before any optimizer step of that batch."""


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, kwargs: dict[str, Any] | None = None
) -> torch.optim.Optimizer:
    """``torch.optim.<name>(params, lr=lr, **kwargs)``; ``ValueError`` for an unknown name."""
    cls = getattr(torch.optim, name, None) if isinstance(name, str) else None
    if (
        not isinstance(cls, type)
        or not issubclass(cls, torch.optim.Optimizer)
        or cls is torch.optim.Optimizer
    ):
        known = sorted(
            k
            for k, v in vars(torch.optim).items()
            if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and k != "Optimizer"
        )
        raise ValueError(f"unknown optimizer {name!r}; torch.optim provides {known}")
    params = list(params)
    if not params:
        raise ValueError(f"cannot build optimizer {name}: no parameters to optimise")
    try:
        return cls(params, lr=lr, **(kwargs or {}))
    except TypeError as err:
        raise TypeError(f"optimizer {name}: bad arguments {kwargs}: {err}") from err


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, kwargs: dict[str, Any] | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """``torch.optim.lr_scheduler.<name>(optimizer, **kwargs)``, stepped once per optimizer step.

    ``ValueError`` for an unknown name and for ``ReduceLROnPlateau`` (it needs a validation
    metric, not a per-step call).
    """
    base = torch.optim.lr_scheduler.LRScheduler
    cls = getattr(torch.optim.lr_scheduler, name, None) if isinstance(name, str) else None
    if name == "ReduceLROnPlateau":
        raise ValueError("scheduler ReduceLROnPlateau needs a validation metric; not supported")
    if not isinstance(cls, type) or not issubclass(cls, base) or cls is base:
        known = sorted(
            k
            for k, v in vars(torch.optim.lr_scheduler).items()
            if isinstance(v, type) and issubclass(v, base) and v is not base
        )
        raise ValueError(f"unknown scheduler {name!r}; torch.optim.lr_scheduler provides {known}")
    try:
        return cls(optimizer, **(kwargs or {}))
    except TypeError as err:
        raise TypeError(f"scheduler {name}: bad arguments {kwargs}: {err}") from err


class Strategy:
    """Base of the training strategies.

    Args:
        net: the unrolled network (its parameters are optimised in place).
        loss_fn: ``loss_fn(image (B, *D) complex, batch) -> scalar`` (see
            :mod:`gleam_mri.training.losses`).
        optimizer, lr, optimizer_kwargs: ``torch.optim.<optimizer>(params, lr=lr, **kwargs)``.
        scheduler, scheduler_kwargs: optional ``torch.optim.lr_scheduler.<scheduler>``, stepped
            once per optimizer step.
        grad_clip: clip the gradient norm of each optimizer's parameters to this value.
        amp: run the network forward under ``torch.autocast(dtype=torch.bfloat16)`` on the
            batch's device; losses stay in float32.
    """

    name = "base"

    def __init__(
        self,
        net: UnrolledNet,
        loss_fn: LossFn,
        optimizer: str = "Adam",
        lr: float = 1e-3,
        optimizer_kwargs: dict | None = None,
        scheduler: str | None = None,
        scheduler_kwargs: dict | None = None,
        grad_clip: float | None = None,
        amp: bool = False,
    ) -> None:
        if not isinstance(net, UnrolledNet):
            raise TypeError(f"{self.name}: net must be an UnrolledNet, got {type(net).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"{self.name}: loss_fn must be callable")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
        self.net = net
        self.loss_fn = loss_fn
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.amp = bool(amp)
        self.step = 0  # completed train steps
        self.optimizers: list[torch.optim.Optimizer] = [
            build_optimizer(optimizer, params, lr, optimizer_kwargs)
            for params in self.parameter_groups()
        ]
        self.schedulers: list[torch.optim.lr_scheduler.LRScheduler] = (
            []
            if scheduler is None
            else [build_scheduler(scheduler, opt, scheduler_kwargs) for opt in self.optimizers]
        )

    # --------------------------------------------------------------------- for subclasses

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Parameters of each optimizer (one optimizer over the whole network by default)."""
        return [list(self.net.parameters())]

    def active_optimizers(self) -> list[int]:
        """Indices of the optimizers stepped by the next train step (all by default)."""
        return list(range(len(self.optimizers)))

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        """Compute the losses of ``batch`` and accumulate ``.grad``; no optimizer step.

        Returns at least ``{"loss": value}``. Raises :class:`NonFiniteLossError` for a NaN or
        infinite loss.
        """
        raise NotImplementedError

    def after_step(self, stepped: list[int]) -> None:
        """Called after the optimizers ``stepped`` took their step (e.g. to advance counters)."""

    def extra_state(self) -> dict[str, Any]:
        """Strategy counters saved in :meth:`state_dict` (none by default)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # --------------------------------------------------------------------- helpers

    def autocast(self, batch: MRIBatch) -> AbstractContextManager:
        """bf16 autocast on the batch's device when ``amp`` is on (a no-op otherwise)."""
        device_type = batch.kspace.device.type
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.amp)

    def problem(self, batch: MRIBatch) -> Problem:
        """The batch's :class:`Problem` (operator, k-space, zero-filled image)."""
        return Problem.from_batch(batch)

    def check_loss(self, loss: torch.Tensor, where: str = "") -> float:
        """The loss as a float; zero grads and raise :class:`NonFiniteLossError` if not finite."""
        if loss.ndim != 0:
            raise ValueError(f"{self.name}: the loss must be a scalar, got {tuple(loss.shape)}")
        value = float(loss.detach())
        if not math.isfinite(value):
            self.zero_grad()
            at = f" ({where})" if where else ""
            raise NonFiniteLossError(
                f"strategy {self.name}{at}: non-finite loss {value} at step {self.step + 1}; "
                "no parameter was updated for this batch"
            )
        return value

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def current_lr(self) -> float:
        """Learning rate of the first active optimizer."""
        index = (self.active_optimizers() or [0])[0]
        return float(self.optimizers[index].param_groups[0]["lr"])

    # --------------------------------------------------------------------- public API

    def train_step(self, batch: MRIBatch) -> dict[str, float]:
        """One optimisation step on ``batch``; returns ``"loss"``, ``"lr"`` and extra metrics."""
        self.net.train()
        active = self.active_optimizers()
        lr = self.current_lr()  # the rate this step uses
        self.zero_grad()
        metrics = dict(self.forward_backward(batch))
        if self.grad_clip is not None:
            for index in active:  # every norm is checked before the first update
                optimizer = self.optimizers[index]
                params = [p for group in optimizer.param_groups for p in group["params"]]
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
                key = "grad_norm" if len(self.optimizers) == 1 else f"grad_norm/module_{index}"
                if not math.isfinite(norm):
                    self.zero_grad()
                    raise NonFiniteLossError(
                        f"strategy {self.name}: non-finite gradient norm ({key}) at step "
                        f"{self.step + 1}; no parameter was updated for this batch"
                    )
                metrics[key] = norm
        for index in active:
            self.optimizers[index].step()
            if self.schedulers:
                self.schedulers[index].step()
        self.step += 1
        self.after_step(active)
        metrics["lr"] = lr
        return metrics

    @torch.no_grad()
    def reconstruct(self, batch: MRIBatch) -> torch.Tensor:
        """Complex image ``(B, *D)`` of the whole network, in eval mode without gradients."""
        was_training = self.net.training
        self.net.eval()
        try:
            with self.autocast(batch):
                return self.net(self.problem(batch))
        finally:
            self.net.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        """Optimizers, schedulers and counters (a plain dict, for ``torch.save``)."""
        return {
            "strategy": self.name,
            "step": self.step,
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [sch.state_dict() for sch in self.schedulers],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ``ValueError`` when it belongs to another configuration."""
        if state.get("strategy") != self.name:
            raise ValueError(
                f"state of strategy {state.get('strategy')!r} cannot be loaded into {self.name!r}"
            )
        for key, mine in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
            if len(state.get(key, [])) != len(mine):
                raise ValueError(
                    f"{self.name}: the state has {len(state.get(key, []))} {key}, this strategy "
                    f"has {len(mine)} (different modules or scheduler setting?)"
                )
        for opt, sd in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(sd)
        for sch, sd in zip(self.schedulers, state["schedulers"], strict=True):
            sch.load_state_dict(sd)
        self.step = int(state["step"])
        self.load_extra_state(state.get("extra", {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(optimizers={len(self.optimizers)}, step={self.step})"
