"""Training strategies of an unrolled network, in one explicit table.

``STRATEGIES`` maps a name to its class; :func:`build_strategy` builds one from keyword
arguments, :func:`strategy_from_config` from a run configuration, :func:`strategy_settings` reads
a strategy's options from a config. All share the
:class:`~gleam_mri.training.strategies.base.Strategy` API: ``train_step(batch)``,
``reconstruct(batch)``, ``state_dict()`` / ``load_state_dict()``, ``optimizers``; each declares
next to its code what is its own: its options (``Strategy.Options``: the config keys, their
checks, the network it trains), its part of the memory planner's cost model (``Strategy.costs``),
which the planner, the study and the bench read. A new strategy is one file and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gleam_mri.config import options_from
from gleam_mri.models.unrolled import UnrolledNet
from gleam_mri.training.losses import LossFn, training_loss
from gleam_mri.training.strategies.base import NonFiniteLossError, Strategy, StrategyOptions
from gleam_mri.training.strategies.checkpointed import Checkpointed
from gleam_mri.training.strategies.end_to_end import EndToEnd
from gleam_mri.training.strategies.greedy import Greedy
from gleam_mri.training.strategies.invertible import Invertible
from gleam_mri.training.strategies.pipeline import PipelineGreedy

if TYPE_CHECKING:
    from gleam_mri.config import Config, OptimConfig

STRATEGIES: dict[str, type[Strategy]] = {
    "e2e": EndToEnd,
    "checkpoint": Checkpointed,
    "invertible": Invertible,
    "greedy": Greedy,
    "pipeline": PipelineGreedy,
}


def build_strategy(name: str, net: UnrolledNet, loss_fn: LossFn, **kwargs: Any) -> Strategy:
    """``STRATEGIES[name](net, loss_fn, **kwargs)``; ``ValueError`` for an unknown name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown training strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](net, loss_fn, **kwargs)


def optimizer_kwargs(optim: OptimConfig) -> dict[str, Any]:
    """The ``optim`` config section as the optimizer arguments every strategy takes."""
    return {
        "optimizer": optim.name,
        "lr": optim.lr,
        "optimizer_kwargs": dict(optim.kwargs),
        "scheduler": optim.scheduler,
        "scheduler_kwargs": dict(optim.scheduler_kwargs),
        "grad_clip": optim.grad_clip,
        "amp": optim.amp,
    }


def strategy_settings(cfg: Config, name: str | None = None) -> StrategyOptions:
    """The ``Options`` of strategy ``name`` (default: the config's) read from ``cfg.strategy``
    (its defaults for the keys not given)."""
    return options_from(
        STRATEGIES[cfg.strategy.name if name is None else name].Options, cfg.strategy.options
    )


def strategy_from_config(cfg: Config, net: UnrolledNet) -> Strategy:
    """The strategy ``cfg.strategy.name`` with its options and ``cfg.optim``, for ``net``."""
    options = strategy_settings(cfg)
    kwargs = {**optimizer_kwargs(cfg.optim), **options.strategy_kwargs(cfg)}
    loss_fn = training_loss(cfg.train.loss, cfg.train.supervision)
    return build_strategy(cfg.strategy.name, net, loss_fn, **kwargs)


__all__ = [
    "STRATEGIES",
    "Checkpointed",
    "EndToEnd",
    "Greedy",
    "Invertible",
    "NonFiniteLossError",
    "PipelineGreedy",
    "Strategy",
    "StrategyOptions",
    "build_strategy",
    "optimizer_kwargs",
    "strategy_from_config",
    "strategy_settings",
]
