"""Gradient checkpointing: keep one state per group of iterations, recompute during backward."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch.utils.checkpoint import checkpoint

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import UnrolledNet
from gleam_mri.schema import at_least
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import Strategy, StrategyOptions
from gleam_mri.training.strategies.costs import Costs, Knob, Terms

if TYPE_CHECKING:
    from gleam_mri.config import Config


@dataclass
class CheckpointOptions(StrategyOptions):
    """``strategy.checkpoint_every``: iterations per checkpointed segment."""

    checkpoint_every: int = field(default=1, metadata=at_least(1))

    def strategy_kwargs(self, cfg: Config) -> dict[str, Any]:
        return {"every": self.checkpoint_every}


class CheckpointCosts(Costs):
    """One stored state per segment of ``k`` iterations, one segment recomputed in backward::

        f_c(B) + ceil(D / k) * s(B)  held,  k * a(B)  recomputed

    ``f_c``, ``s`` come from checkpointed steps with ``k = 1`` at depths 1 and 2. Planner setting
    ``every`` (``strategy.checkpoint_every``); the study and the planner look for the longest
    segments that fit.
    """

    settings: ClassVar[dict[str, str]] = {"every": "checkpoint_every"}
    knob = Knob("every", "most", "iterations per checkpointed segment")
    calibration = (1, 2)
    calibration_setting: ClassVar[dict[str, int]] = {"every": 1}
    line_terms = ("f_c", "s")
    floor_target = 1.45

    def fitted(self, terms: dict[str, Any], allocator: bool) -> None:
        if allocator:  # the k = 1 calibration peaks include one recomputed iteration: take it out
            terms["f_c"] = terms["f_c"] - terms["a"]

    def check(self, depth: int, setting: Mapping[str, int | None], shared_weights: bool) -> None:
        every = setting.get("every")
        if every is not None and every < 1:
            raise ValueError(f"checkpoint needs every >= 1, got {every}")

    def activations(
        self, terms: Terms, depth: int, batch: int, setting: Mapping[str, int | None]
    ) -> tuple[float, float]:
        k = min(setting.get("every") or depth, depth)
        held = terms["f_c"](batch) + math.ceil(depth / k) * terms["s"](batch)
        return held, k * terms["a"](batch)

    def describe(self, depth: int, setting: Mapping[str, int | None]) -> str:
        return f", a checkpoint every {min(setting.get('every') or depth, depth)} iterations"


class Checkpointed(Strategy):
    """End-to-end gradients with ``torch.utils.checkpoint`` over groups of ``every`` iterations.

    The prologue (if any), the initial state and the read-out run normally. Each group keeps only
    its input state (``(B, *D)`` or ``(B, C, *D)``, doubled for invertible nets); its activations
    are recomputed one group at a time during backward, so saved memory is about
    ``depth / every`` states plus one group's activations. Gradients equal :class:`EndToEnd`'s.

    Extra args:
        every: iterations per checkpointed group (>= 1).
    """

    name = "checkpoint"
    Options = CheckpointOptions
    costs = CheckpointCosts()

    def __init__(self, net: UnrolledNet, loss_fn: LossFn, *, every: int = 1, **kwargs) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint: every must be an integer >= 1, got {every!r}")
        self.every = every
        super().__init__(net, loss_fn, **kwargs)

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        net = self.net
        with self.autocast(batch):
            problem = net.prepare(self.problem(batch))
            state = net.init_state(problem)
            for start in range(0, len(net), self.every):
                stop = min(start + self.every, len(net))
                state = checkpoint(net.run, state, problem, start, stop, use_reentrant=False)
            image = net.image(state, problem)
        loss = self.loss_fn(image, batch)
        value = self.check_loss(loss)
        loss.backward()
        return {"loss": value}
