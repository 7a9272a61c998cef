"""A strategy's part of the memory planner's cost model, declared beside the strategy.

The planner (:mod:`gleam_mri.plan.costs`) measures every network trained end to end at depths 1,
2 and 3 and batches 1 and 2: the parameters, gradients and optimizer state per iteration, the
batch tensors, and the activations of a chain of iterations trained end to end, as *terms* linear
in the batch size ``B`` (bytes):

- ``one(B)``: one iteration alone; ``f(B) + D * a(B)``: ``D >= 2`` iterations (:func:`chain`).

A strategy says how its step's activations follow from the terms (:meth:`Costs.activations`).
Where they follow another law it measures steps of its own: at the depths ``calibration``
(batches 1 and 2, planner settings ``calibration_setting``), and the planner fits a line through
the last two of them, stored as the terms ``line_terms`` (intercept and slope in depth, each
linear in ``B``).

Planner *settings* are the strategy's memory-shaping options by a short name (``modules``,
``every``): :attr:`Costs.settings` maps each to the option of the strategy's ``Options`` it sets.
:attr:`Costs.knob` is the one the planner and the study search for what fits a budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

__all__ = ["Costs", "Knob", "Terms", "chain"]

Terms = Mapping[str, Callable[[float], float]]  # name -> bytes as a function of the batch size


def chain(terms: Terms, depth: int, batch: int) -> float:
    """Activations (bytes) of ``depth`` iterations trained end to end: a whole network or a
    greedy module (a one-iteration chain is its own measured case: its input needs no grad)."""
    return terms["one"](batch) if depth == 1 else terms["f"](batch) + depth * terms["a"](batch)


@dataclass(frozen=True)
class Knob:
    """A planner setting searched for what fits a budget, over ``1 .. depth``.

    ``prefer``: ``"fewest"`` keeps the smallest value that fits (greedy: the fewest, i.e. largest,
    modules), ``"most"`` the largest (checkpointing: the longest segments). ``means``: what the
    value is, in words; ``at_one``: what value 1 means, said when 1 fits (``fewest``).
    """

    setting: str
    prefer: Literal["fewest", "most"]
    means: str
    at_one: str = ""


class Costs:
    """End to end: the activations of the whole chain (the default of every strategy)."""

    settings: ClassVar[dict[str, str]] = {}  # planner setting -> option of the strategy
    knob: ClassVar[Knob | None] = None
    calibration: ClassVar[tuple[int, ...]] = ()  # depths of the strategy's own measured steps
    calibration_setting: ClassVar[dict[str, int]] = {}
    line_terms: ClassVar[tuple[str, str] | None] = None  # names of the fitted intercept, slope
    # step time / CNN-only floor that a GPU should reach at every depth (gleam bench's targets)
    floor_target: ClassVar[float | None] = None

    def fitted(self, terms: dict[str, Any], allocator: bool) -> None:
        """Correct this strategy's fitted terms in place (``allocator``: CUDA peaks)."""

    def check(self, depth: int, setting: Mapping[str, int | None], shared_weights: bool) -> None:
        """``ValueError`` for a setting this strategy cannot train at ``depth``."""

    def activations(
        self, terms: Terms, depth: int, batch: int, setting: Mapping[str, int | None]
    ) -> tuple[float, float]:
        """``(activations, recompute)`` bytes of one step: what the step holds at its peak, and
        what a checkpoint recomputes in backward (the CPU meter cannot see it: apart)."""
        return chain(terms, depth, batch), 0.0

    def skipped(self, shared_weights: bool) -> str | None:
        """Why the planner cannot plan this strategy for the network (``None``: it can)."""
        return None

    def describe(self, depth: int, setting: Mapping[str, int | None]) -> str:
        """The setting in words, appended to the planner's line, e.g. ``, 2 modules of <= 4``."""
        return ""

    def clamp(self, depth: int, setting: Mapping[str, int | None]) -> dict[str, int | None]:
        """``setting`` made possible at ``depth`` (the config's values while the planner varies
        the depth; e.g. no more greedy modules than iterations)."""
        return dict(setting)

    def options(self, setting: Mapping[str, int | None]) -> dict[str, Any]:
        """The strategy's options (config keys) that ``setting`` sets; ``None``: the config's."""
        return {
            self.settings[k]: v for k, v in setting.items() if k in self.settings and v is not None
        }
