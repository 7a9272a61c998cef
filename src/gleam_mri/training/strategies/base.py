"""The :class:`Strategy` base: one training step, per-group optimizers, options, state.

A strategy owns how gradients of an :class:`~gleam_mri.models.unrolled.UnrolledNet` are computed
(end to end, checkpointed, invertible, greedy, pipelined greedy) and the optimizers that apply
them (:class:`~gleam_mri.training.optimizers.ModuleOptimizers`); it never changes the model's
code. One training step is::

    zero grads -> forward_backward(batch) (losses, .grad; NonFiniteLossError before any update)
    -> reduce_gradients (data-parallel replicas) -> clip each group's norm -> step, schedulers

A new strategy is a subclass in its own file, registered in ``STRATEGIES``
(:mod:`gleam_mri.training.strategies`). It overrides :meth:`forward_backward` and, where needed,
:meth:`parameter_groups` / :meth:`active_groups`, and declares what is its own:

- ``Options``, a small dataclass (a :class:`StrategyOptions`): the config's ``strategy`` section
  is checked against it when the config is loaded, :meth:`StrategyOptions.strategy_kwargs` turns
  it into constructor arguments and :meth:`StrategyOptions.network` says which network it trains;
- ``costs``, its part of the memory planner's cost model
  (:class:`~gleam_mri.training.strategies.costs.Costs`), which ``gleam plan``, ``gleam study``
  and ``gleam bench`` read (``None``: not planned, e.g. a distributed strategy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.devices import bf16_autocast, resolve_device
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.training.errors import NonFiniteLossError
from gleam_mri.training.losses import LossFn
from gleam_mri.training.optimizers import ModuleOptimizers
from gleam_mri.training.run import CheckpointStore, LastCheckpoint, Run
from gleam_mri.training.strategies.costs import Costs

if TYPE_CHECKING:
    from gleam_mri.config import Config, ModelConfig

__all__ = ["NonFiniteLossError", "Strategy", "StrategyOptions"]


@dataclass
class StrategyOptions:
    """A strategy's own options (none by default): the config keys beside ``strategy.name``."""

    def check(self, cfg: Config) -> None:
        """Raise :class:`~gleam_mri.schema.ConfigError` when the options do not fit ``cfg``."""

    def strategy_kwargs(self, cfg: Config) -> dict[str, Any]:
        """Keyword arguments of the strategy's constructor (the fields, by default)."""
        return dataclasses.asdict(self)

    def network(self, model: ModelConfig) -> ModelConfig:
        """The network this strategy trains when asked to train ``model`` (the planner and the
        bench build it so; a config must already name it): ``model`` itself by default."""
        return model


class Strategy:
    """Base of the training strategies.

    Args:
        net: the unrolled network (its parameters are optimised in place).
        loss_fn: ``loss_fn(image (B, *D) complex, batch) -> scalar`` (see
            :mod:`gleam_mri.training.losses`).
        amp: run the network forward under bf16 autocast on the batch's device; losses stay in
            float32.
        **optimizer_options: ``optimizer``, ``lr``, ``optimizer_kwargs``, ``scheduler``,
            ``scheduler_kwargs``, ``grad_clip`` of
            :class:`~gleam_mri.training.optimizers.ModuleOptimizers` (one optimizer per
            parameter group; default Adam, lr 1e-3).
    """

    name = "base"
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    costs: ClassVar[Costs | None] = Costs()  # its part of the planner's cost model
    distributed: ClassVar[bool] = False  # runs one process per stage under torchrun

    def __init__(
        self, net: UnrolledNet, loss_fn: LossFn, *, amp: bool = False, **optimizer_options: Any
    ) -> None:
        if not isinstance(net, UnrolledNet):
            raise TypeError(f"{self.name}: net must be an UnrolledNet, got {type(net).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"{self.name}: loss_fn must be callable")
        self.net = net
        self.loss_fn = loss_fn
        self.amp = bool(amp)
        self.step = 0  # completed train steps
        groups, labels = self.parameter_groups(), self.group_labels()
        self.optim = ModuleOptimizers(groups, labels, **optimizer_options)

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.optim.optimizers

    @property
    def schedulers(self) -> list[torch.optim.lr_scheduler.LRScheduler]:
        return self.optim.schedulers

    @property
    def grad_clip(self) -> float | None:
        return self.optim.grad_clip

    # --------------------------------------------------------------------- for subclasses

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Parameters of each optimizer (one optimizer over the whole network by default)."""
        return [list(self.net.parameters())]

    def group_labels(self) -> list[str] | None:
        """Metric label of each parameter group (``None``: numbered)."""
        return None

    def active_groups(self) -> list[int]:
        """Indices of the groups stepped by the next train step (all by default)."""
        return list(range(len(self.optim)))

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        """Compute the losses of ``batch`` and accumulate ``.grad``; no optimizer step.

        Returns at least ``{"loss": value}``. Raises :class:`NonFiniteLossError` for a NaN or
        infinite loss.
        """
        raise NotImplementedError

    def reduce_gradients(self, failure: NonFiniteLossError | None) -> None:
        """Combine gradients across data-parallel copies (none here); re-raise ``failure``."""
        if failure is not None:
            raise failure

    def after_step(self, stepped: list[int]) -> None:
        """Called after the groups ``stepped`` took their step (e.g. to advance counters)."""

    def extra_state(self) -> dict[str, Any]:
        """Strategy counters saved in :meth:`state_dict` (none by default)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # --------------------------------------------------------------------- helpers

    def autocast(self, batch: MRIBatch) -> AbstractContextManager:
        """bf16 autocast on the batch's device when ``amp`` is on (a no-op otherwise)."""
        return bf16_autocast(batch.kspace.device, self.amp)

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
        self.optim.zero_grad()

    # --------------------------------------------------------------------- public API

    def train_step(self, batch: MRIBatch) -> dict[str, float]:
        """One optimisation step on ``batch``; returns ``"loss"``, ``"lr"`` and extra metrics."""
        self.net.train()
        active = self.active_groups()
        lr = self.optim.lr(active[0])  # the rate this step uses
        self.zero_grad()
        failure, metrics = None, {}
        try:
            metrics = dict(self.forward_backward(batch))
        except NonFiniteLossError as err:
            failure = err
        self.reduce_gradients(failure)
        metrics.update(self.optim.clip(active, f"strategy {self.name} at step {self.step + 1}"))
        self.optim.step(active)
        self.step += 1
        self.after_step(active)
        metrics["lr"] = lr
        return metrics

    @torch.no_grad()
    def reconstruct(self, batch: MRIBatch) -> torch.Tensor | None:
        """Complex image ``(B, *D)`` of the whole network, in eval mode without gradients.

        ``None`` on a process that does not produce the image (a pipeline stage other than the
        last).
        """
        was_training = self.net.training
        self.net.eval()
        try:
            with self.autocast(batch):
                return self.net(self.problem(batch))
        finally:
            self.net.train(was_training)

    # --------------------------------------------------------------------- the run around it

    @classmethod
    def session(cls, cfg: Config) -> AbstractContextManager[torch.device]:
        """The context a run of this strategy trains in; yields the device (``train.device``)."""
        return contextlib.nullcontext(resolve_device(cfg.train.device))

    def checkpoint_store(self, run: Run) -> CheckpointStore:
        """How the run's state is saved and resumed: ``last.pt``."""
        return LastCheckpoint(run)

    @property
    def reports(self) -> bool:
        """Whether this process writes the run's log, TensorBoard and progress (one process)."""
        return True

    @property
    def produces_image(self) -> bool:
        """Whether :meth:`reconstruct` returns the image here (so validation is scored here)."""
        return True

    @property
    def data_shard(self) -> tuple[int, int]:
        """``(i, n)``: this process trains on part ``i`` of ``n`` of every batch."""
        return 0, 1

    @property
    def log_name(self) -> str | None:
        """File name of this process's metrics log in the run folder (``None``: no log)."""
        return "metrics.jsonl"

    def finish(self) -> None:
        """Called once after the last train step (pipelines drain their links here)."""

    def state_dict(self) -> dict[str, Any]:
        """Optimizers, schedulers and counters (a plain dict, for ``torch.save``)."""
        return {
            "strategy": self.name,
            "step": self.step,
            **self.optim.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ``ValueError`` when it belongs to another configuration."""
        if state.get("strategy") != self.name:
            raise ValueError(
                f"state of strategy {state.get('strategy')!r} cannot be loaded into {self.name!r}"
            )
        self.optim.load_state_dict(state, self.name)
        self.step = int(state["step"])
        self.load_extra_state(state.get("extra", {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(optimizers={len(self.optim)}, step={self.step})"
