"""Training strategies of an unrolled network, in one explicit table.

``STRATEGIES`` maps a name to its class; :func:`build_strategy` builds one. All share the
:class:`~gleam_mri.training.strategies.base.Strategy` API: ``train_step(batch)``,
``reconstruct(batch)``, ``state_dict()`` / ``load_state_dict()``, ``optimizers``.
"""

from __future__ import annotations

from typing import Any

from gleam_mri.models.unrolled import UnrolledNet
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import NonFiniteLossError, Strategy
from gleam_mri.training.strategies.checkpointed import Checkpointed
from gleam_mri.training.strategies.end_to_end import EndToEnd
from gleam_mri.training.strategies.greedy import Greedy
from gleam_mri.training.strategies.invertible import Invertible

STRATEGIES: dict[str, type[Strategy]] = {
    "e2e": EndToEnd,
    "checkpoint": Checkpointed,
    "invertible": Invertible,
    "greedy": Greedy,
}


def build_strategy(name: str, net: UnrolledNet, loss_fn: LossFn, **kwargs: Any) -> Strategy:
    """``STRATEGIES[name](net, loss_fn, **kwargs)``; ``ValueError`` for an unknown name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown training strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](net, loss_fn, **kwargs)


__all__ = [
    "STRATEGIES",
    "Checkpointed",
    "EndToEnd",
    "Greedy",
    "Invertible",
    "NonFiniteLossError",
    "Strategy",
    "build_strategy",
]
