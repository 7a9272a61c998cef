"""The arms of the equal-memory study and what each is given under a memory budget.

The study config names the *deep* network (``model.unrolls``). For a budget the memory planner's
cost model (:class:`~gleam_mri.plan.costs.CostModel`, measured on the device) chooses:

- ``e2e-fit``: end to end at the deepest network that fits;
- ``greedy``: GLEAM at the deep network, with the fewest modules (the largest) that fit;
- ``checkpoint``: checkpointing at the deep network, with the largest segments that fit;
- ``invertible``: MEL at the deep depth: invertible training of the same network, each iteration
  inverted by fixed-point iteration (``strategy.fixed_point_iters``); memory flat in depth; on
  PGD only the bounded network (``model.dc.step_max``, ``model.spectral_bound``) inverts;
- ``invertible-coupling``: invertible training with exact inverses, which needs the coupled
  network (``model.invertible``: another architecture, the regulariser run twice per iteration);
- ``greedy-same-depth``: GLEAM at ``e2e-fit``'s depth, cut into as many modules as the greedy arm
  (at least two: one module is end to end), so what decoupling costs at equal depth;
- ``e2e-deep``: end to end at the deep network, a reference outside the budget.

An arm that cannot fit is kept, marked ``fits=False``, and not trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from gleam_mri.config import Config
from gleam_mri.plan.costs import CostModel, setting_names, strategy_costs
from gleam_mri.plan.planner import best_fit
from gleam_mri.training.strategies import STRATEGIES
from gleam_mri.units import parse_size

__all__ = ["ARMS", "ArmPlan", "plan_arms", "resolve_budget"]

ARMS = (
    "e2e-fit",
    "greedy",
    "checkpoint",
    "invertible",
    "invertible-coupling",
    "greedy-same-depth",
    "e2e-deep",
)


@dataclass(frozen=True)
class ArmPlan:
    """One arm: its strategy and setting, the predicted step memory (bytes) and whether it fits.

    ``settings``: the strategy's planner settings (``{"modules": 4}``; also read as attributes,
    ``arm.modules``, ``None`` where the strategy has none); ``options``: other options of the
    strategy the arm fixes (``{"inversion": "coupling"}``); ``invertible``: the network the
    strategy trains with them is the coupled one (``Options.network``). ``in_budget``: the arm
    is held to the budget (all but ``e2e-deep``).
    """

    name: str
    strategy: str
    depth: int
    settings: dict[str, int | None]
    predicted_bytes: int | None
    fits: bool
    in_budget: bool = True
    note: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    invertible: bool = False

    def __getattr__(self, name: str) -> int | None:
        if name != "settings" and name in setting_names():
            return self.settings.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def trained(self) -> bool:
        """Whether the study trains this arm (it fits, or it is the reference)."""
        return self.fits or not self.in_budget

    def strategy_options(self) -> dict[str, Any]:
        """The strategy's config options this arm sets (its options and its settings)."""
        return {**self.options, **strategy_costs(self.strategy).options(self.settings)}

    def overrides(self) -> list[str]:
        """Config overrides (``--set``) that turn the study config into this arm."""
        sets = [f"strategy.name={self.strategy}", f"model.unrolls={self.depth}"]
        sets.append(f"model.invertible={'true' if self.invertible else 'false'}")
        sets += [f"strategy.{key}={value}" for key, value in self.strategy_options().items()]
        return sets

    def setting(self) -> str:
        """The setting in words, e.g. ``8 iterations, 4 modules of <= 2 iterations``."""
        described = strategy_costs(self.strategy).describe(self.depth, self.settings)
        return f"{self.depth} iterations{described}"

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "setting": self.setting(), "trained": self.trained}
        out.update({name: self.settings.get(name) for name in setting_names()})
        return out


def resolve_budget(budget: int | str, costs: CostModel, batch: int) -> int:
    """Bytes of a budget given as a size (``"2GiB"``, bytes) or as ``"e2e@N"``: halfway between
    what end to end needs at ``N`` and at ``N + 1`` iterations on this device (so that e2e-fit
    gets exactly ``N``, whatever the card)."""
    if isinstance(budget, str) and budget.strip().lower().startswith("e2e@"):
        depth_text = budget.strip()[4:]
        if not depth_text.isdigit() or int(depth_text) < 1:
            raise ValueError(f"budget {budget!r}: expected e2e@N with an integer N >= 1")
        depth = int(depth_text)
        low = costs.predict("e2e", depth, batch).total
        return (low + costs.predict("e2e", depth + 1, batch).total) // 2
    return parse_size(budget)


def plan_arms(
    cfg: Config, budget: int, costs: CostModel, arms: tuple[str, ...] | list[str] = ARMS
) -> list[ArmPlan]:
    """Choose each arm's setting for ``budget`` bytes from ``costs`` (see the module docstring).

    A strategy's knob (``costs.knob``: greedy's modules, checkpointing's segment length) is set
    as the planner sets it: the value nearest its preferred end that fits, else the end that
    needs least. ``ValueError`` before any training for an unknown arm, a budget in which no arm
    fits, or a budget in which end to end already fits the deep network (nothing to compare).
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ValueError(f"unknown arms {unknown or '(none given)'}; choose from {list(ARMS)}")
    deep, batch = cfg.model.unrolls, cfg.data.batch_size

    def total(strategy: str, depth: int, **setting: Any) -> int:
        return costs.predict(strategy, depth, batch, **setting).total

    def arm(name: str, strategy: str, depth: int, settings=None, **options: Any) -> ArmPlan:
        """The arm at ``settings``, or with its knob tuned to the budget; fitting or not."""
        knob = strategy_costs(strategy).knob
        if settings is None:
            settings = {}
            if knob is not None:
                fewest = knob.prefer == "fewest"
                tune = lambda v: total(strategy, depth, **{knob.setting: v})  # noqa: E731
                best = best_fit(tune, budget, depth, fewest)
                settings = {knob.setting: best if best is not None else (depth if fewest else 1)}
        predicted = total(strategy, depth, **settings)
        fits = predicted <= budget
        note = "" if fits else "does not fit the budget even at its smallest setting"
        ordinary = dataclasses.replace(cfg.model, invertible=False)
        network = STRATEGIES[strategy].Options(**options).network(ordinary)
        return ArmPlan(name, strategy, depth, settings, predicted, fits, note=note,
                       options=options, invertible=network.invertible)  # fmt: skip

    if total("e2e", deep) <= budget:
        raise ValueError(
            f"end to end already fits the deep network ({deep} iterations, predicted "
            f"{total('e2e', deep)} bytes) in the budget of {budget} bytes: nothing to compare; "
            "lower --budget or raise model.unrolls"
        )
    # the best setting that fits, else the smallest (which then reports that it does not fit)
    fit_depth = max((d for d in range(1, deep) if total("e2e", d) <= budget), default=1)
    greedy = arm("greedy", "greedy", deep)
    # greedy-same-depth: decoupled as the greedy arm, but never one module (that is e2e-fit)
    same = max(min(greedy.modules, fit_depth), min(2, fit_depth))
    plans = {
        "e2e-fit": arm("e2e-fit", "e2e", fit_depth),
        "greedy": greedy,
        "checkpoint": arm("checkpoint", "checkpoint", deep),
        "invertible": arm("invertible", "invertible", deep, inversion="fixed-point"),
        "invertible-coupling": arm("invertible-coupling", "invertible", deep, inversion="coupling"),
        "greedy-same-depth": arm("greedy-same-depth", "greedy", fit_depth, {"modules": same}),
        "e2e-deep": dataclasses.replace(
            arm("e2e-deep", "e2e", deep), in_budget=False, note="reference outside the budget"
        ),
    }
    chosen = [plans[a] for a in arms]
    in_budget = [p for p in chosen if p.in_budget]
    if not any(p.fits for p in in_budget):
        smallest = min(p.predicted_bytes for p in in_budget)
        raise ValueError(
            f"no arm fits the budget of {budget} bytes (smallest predicted: {smallest} bytes); "
            "raise --budget"
        )
    return chosen
