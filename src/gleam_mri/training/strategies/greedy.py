"""Greedy (GLEAM) training: modules with their own loss and optimizer on detached inputs.

The network is split into ``M`` modules of consecutive iterations (``net.split(M)``). Module ``m``
takes the *detached* output state of module ``m - 1`` (module 0 also runs the prologue), reads out
an image with ``net.image`` and is trained on its own loss against the target. No gradient crosses
a module boundary, so only one module's activations are alive at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.loss_names import LossName
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.schema import ConfigError, at_least
from gleam_mri.training.losses import LossFn, build_loss
from gleam_mri.training.strategies.base import Strategy, StrategyOptions
from gleam_mri.training.strategies.costs import Costs, Knob, Terms, chain

if TYPE_CHECKING:
    from gleam_mri.config import Config

MODES = ("simultaneous", "sequential")


def check_modules(modules: int | None, cfg: Config, module_loss: str | None = None) -> None:
    """``ConfigError`` when ``modules`` cannot be cut from ``cfg.model.unrolls`` iterations, or
    an image ``module_loss`` is asked for under self-supervision (every module then trains on
    the held-out k-space loss)."""
    if modules is not None and modules > cfg.model.unrolls:
        raise ConfigError(
            f"{modules} modules cannot be cut from model.unrolls={cfg.model.unrolls} iterations",
            "strategy.modules",
        )
    if module_loss and cfg.train.supervision == "self":
        raise ConfigError(
            f"an image loss ({module_loss!r}) needs a target; with train.supervision=self every "
            "module trains on the held-out k-space loss: leave strategy.module_loss unset",
            "strategy.module_loss",
        )


@dataclass
class GreedyOptions(StrategyOptions):
    """``strategy.modules`` (``None``: one per iteration), ``mode``, ``steps_per_module``
    (sequential; ``None``: ``train.steps`` split evenly over the modules) and ``module_loss``
    (loss of the intermediate modules; ``None``: ``train.loss``)."""

    modules: int | None = field(default=None, metadata=at_least(1))
    mode: Literal["simultaneous", "sequential"] = "simultaneous"
    steps_per_module: int | None = field(default=None, metadata=at_least(1))
    module_loss: LossName | None = None

    def check(self, cfg: Config) -> None:
        check_modules(self.modules, cfg, self.module_loss)

    def strategy_kwargs(self, cfg: Config) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"modules": self.modules, "mode": self.mode}
        if self.mode == "sequential":
            n_modules = self.modules or cfg.model.unrolls
            kwargs["steps_per_module"] = self.steps_per_module or -(-cfg.train.steps // n_modules)
        if self.module_loss:
            kwargs["module_loss"] = build_loss(self.module_loss)
        return kwargs


class GreedyCosts(Costs):
    """The activations of the largest module alone: a chain of ``ceil(D / M)`` iterations.

    Planner setting ``modules`` (``strategy.modules``; ``None``: one per iteration); the planner
    and the study look for the fewest (largest) modules that fit.
    """

    settings: ClassVar[dict[str, str]] = {"modules": "modules"}
    knob = Knob("modules", "fewest", "modules", "One module (end-to-end training)")
    floor_target = 1.10

    def check(self, depth: int, setting: Mapping[str, int | None], shared_weights: bool) -> None:
        m = setting.get("modules") or depth
        if not 1 <= m <= depth:
            raise ValueError(f"greedy needs 1 <= modules <= depth={depth}, got {m}")
        if m > 1 and shared_weights:
            raise ValueError("greedy cannot split a network whose iterations share weights")

    def activations(
        self, terms: Terms, depth: int, batch: int, setting: Mapping[str, int | None]
    ) -> tuple[float, float]:
        return chain(terms, math.ceil(depth / (setting.get("modules") or depth)), batch), 0.0

    def skipped(self, shared_weights: bool) -> str | None:
        return "the iterations share weights (no split possible)" if shared_weights else None

    def clamp(self, depth: int, setting: Mapping[str, int | None]) -> dict[str, int | None]:
        return {**setting, "modules": min(setting.get("modules") or depth, depth)}

    def describe(self, depth: int, setting: Mapping[str, int | None]) -> str:
        m = setting.get("modules") or depth
        n = -(-depth // m)
        return f", {m} module{'s' * (m != 1)} of <= {n} iteration{'s' * (n != 1)}"


class Greedy(Strategy):
    """Greedy layer-wise (module-wise) training, one optimizer (and scheduler) per module.

    Extra args:
        modules: number of modules ``M`` (``None``: one per iteration).
        mode: ``"simultaneous"`` (GLEAM: every batch trains every module, each on the detached
            output of the previous one) or ``"sequential"`` (module ``m`` alone for
            ``steps_per_module`` steps, earlier modules frozen and run without grad, later ones
            not run; after the last module's budget the last module keeps training).
        steps_per_module: train steps per module in sequential mode.
        module_loss: loss of the intermediate modules ``0 .. M-2`` (default: ``loss_fn``); the
            last module always uses ``loss_fn``.

    Metrics: ``"loss"`` (the last module run), ``"loss/module_<m>"`` for each module run, and in
    sequential mode ``"module"`` (the module trained). In simultaneous mode the optimizer steps
    are taken after all module losses of the batch were checked; since each module's input is
    computed before any step and detached, this equals stepping each module right after its
    backward, and a non-finite loss in any module leaves every parameter untouched.

    Subclasses may own a contiguous subset of the modules (:meth:`owned_module_ids`; a pipeline
    stage): ``module_ids`` are the owned modules' indices in ``0 .. n_modules - 1``, ``modules``
    the owned modules, one optimizer each.
    """

    name = "greedy"
    Options = GreedyOptions
    costs = GreedyCosts()

    def __init__(
        self,
        net: UnrolledNet,
        loss_fn: LossFn,
        *,
        modules: int | None = None,
        mode: str = "simultaneous",
        steps_per_module: int = 100,
        module_loss: LossFn | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"{self.name}: mode must be one of {MODES}, got {mode!r}")
        if isinstance(steps_per_module, bool) or not isinstance(steps_per_module, int):
            raise TypeError(f"greedy: steps_per_module must be an int, got {steps_per_module!r}")
        if steps_per_module < 1:
            raise ValueError(f"greedy: steps_per_module must be >= 1, got {steps_per_module}")
        if module_loss is not None and not callable(module_loss):
            raise TypeError(f"{self.name}: module_loss must be callable or None")
        self.mode = mode
        self.steps_per_module = steps_per_module
        self.module_loss = module_loss if module_loss is not None else loss_fn
        every_module = net.split(len(net) if modules is None else int(modules))
        self.n_modules = len(every_module)
        self._check_parameters(net, every_module)
        self.module_ids = self.owned_module_ids(self.n_modules)
        self.modules = [every_module[m] for m in self.module_ids]
        self.module_steps = [0] * len(self.modules)  # train steps taken by each owned module
        super().__init__(net, loss_fn, **kwargs)

    def owned_module_ids(self, n_modules: int) -> list[int]:
        """Indices of the modules this strategy trains (all of them here)."""
        return list(range(n_modules))

    def _check_parameters(self, net: UnrolledNet, modules: list[nn.Module]) -> None:
        owned = {id(p) for module in modules for p in module.parameters()}
        stray = [name for name, p in net.named_parameters() if id(p) not in owned]
        if stray:
            raise ValueError(
                f"{self.name}: parameters {stray} belong to no module and would not train"
            )
        empty = [m for m, module in enumerate(modules) if not list(module.parameters())]
        if empty:
            raise ValueError(
                f"{self.name}: modules {empty} have no parameters to train; use fewer modules"
            )

    # --------------------------------------------------------------------- Strategy hooks

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        return [list(module.parameters()) for module in self.modules]

    def group_labels(self) -> list[str]:
        return [f"module_{m}" for m in self.module_ids]

    @property
    def active_module(self) -> int:
        """Sequential mode: the module trained by the next step."""
        for m, steps in enumerate(self.module_steps):
            if steps < self.steps_per_module:
                return m
        return len(self.modules) - 1

    def active_groups(self) -> list[int]:
        if self.mode == "sequential":
            return [self.active_module]
        return list(range(len(self.modules)))

    def after_step(self, stepped: list[int]) -> None:
        for m in stepped:
            self.module_steps[m] += 1

    def extra_state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "modules": self.n_modules,
            "module_steps": list(self.module_steps),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("modules") != self.n_modules or state.get("mode") != self.mode:
            raise ValueError(
                f"{self.name}: the state has {state.get('modules')} modules in mode "
                f"{state.get('mode')!r}, this strategy {self.n_modules} in {self.mode!r}"
            )
        self.module_steps = [int(s) for s in state["module_steps"]]

    # --------------------------------------------------------------------- training

    def _module_loss(self, m: int, out: torch.Tensor, problem: Problem, batch: MRIBatch):
        with self.autocast(batch):
            image = self.net.image(out, problem)
        loss_fn = self.loss_fn if m == self.n_modules - 1 else self.module_loss
        return loss_fn(image, batch)

    def start(self, batch: MRIBatch) -> tuple[Problem, torch.Tensor]:
        """The prepared problem (the prologue belongs to module 0) and the initial state."""
        with self.autocast(batch):
            problem = self.net.prepare(self.problem(batch))
            return problem, self.net.init_state(problem)

    def train_modules(
        self, state: torch.Tensor, problem: Problem, batch: MRIBatch
    ) -> tuple[torch.Tensor, Problem, dict[str, float]]:
        """Train every owned module on the detached output of the one before (accumulates
        ``.grad``); returns the last output and the problem, detached, and the module losses."""
        metrics: dict[str, float] = {}
        for m, module in zip(self.module_ids, self.modules, strict=True):
            with self.autocast(batch):
                out = module(state, problem)
            loss = self._module_loss(m, out, problem, batch)
            metrics[f"loss/module_{m}"] = self.check_loss(loss, f"module {m}")
            loss.backward()
            del loss
            if m == 0:
                problem = problem.detach()  # the prologue's graph ends with module 0
            state = out.detach()
            del out
        metrics["loss"] = metrics[f"loss/module_{self.module_ids[-1]}"]
        return state, problem, metrics

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        if self.mode == "sequential":
            return self._sequential(batch)
        problem, state = self.start(batch)
        return self.train_modules(state, problem, batch)[2]

    def _sequential(self, batch: MRIBatch) -> dict[str, float]:
        active = self.active_module
        # the prologue belongs to module 0: with grad only while module 0 trains
        with torch.enable_grad() if active == 0 else torch.no_grad():
            problem, state = self.start(batch)
        with torch.no_grad(), self.autocast(batch):  # frozen modules: no graph
            for module in self.modules[:active]:
                state = module(state, problem)
        with self.autocast(batch):
            out = self.modules[active](state, problem)
        loss = self._module_loss(active, out, problem, batch)
        value = self.check_loss(loss, f"module {active}")
        loss.backward()
        return {"loss": value, f"loss/module_{active}": value, "module": float(active)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(modules={self.module_ids} of {self.n_modules}, "
            f"mode={self.mode!r}, step={self.step}, module_steps={self.module_steps})"
        )
