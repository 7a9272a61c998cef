"""Greedy (GLEAM) training: modules with their own loss and optimizer on detached inputs.

The network is split into ``M`` modules of consecutive iterations (``net.split(M)``). Module ``m``
takes the *detached* output state of module ``m - 1`` (module 0 also runs the prologue), reads out
an image with ``net.image`` and is trained on its own loss against the target. No gradient crosses
a module boundary, so only one module's activations are alive at a time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import Strategy

MODES = ("simultaneous", "sequential")


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
    """

    name = "greedy"

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
            raise ValueError(f"greedy: mode must be one of {MODES}, got {mode!r}")
        if isinstance(steps_per_module, bool) or not isinstance(steps_per_module, int):
            raise TypeError(f"greedy: steps_per_module must be an int, got {steps_per_module!r}")
        if steps_per_module < 1:
            raise ValueError(f"greedy: steps_per_module must be >= 1, got {steps_per_module}")
        if module_loss is not None and not callable(module_loss):
            raise TypeError("greedy: module_loss must be callable or None")
        self.mode = mode
        self.steps_per_module = steps_per_module
        self.module_loss = module_loss if module_loss is not None else loss_fn
        self.modules = net.split(len(net) if modules is None else int(modules))
        self.module_steps = [0] * len(self.modules)  # train steps taken by each module
        self._check_parameters(net)
        super().__init__(net, loss_fn, **kwargs)

    def _check_parameters(self, net: UnrolledNet) -> None:
        owned = {id(p) for module in self.modules for p in module.parameters()}
        stray = [name for name, p in net.named_parameters() if id(p) not in owned]
        if stray:
            raise ValueError(f"greedy: parameters {stray} belong to no module and would not train")
        empty = [m for m, module in enumerate(self.modules) if not list(module.parameters())]
        if empty:
            raise ValueError(
                f"greedy: modules {empty} have no parameters to train; use fewer modules"
            )

    # --------------------------------------------------------------------- Strategy hooks

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        return [list(module.parameters()) for module in self.modules]

    @property
    def active_module(self) -> int:
        """Sequential mode: the module trained by the next step."""
        for m, steps in enumerate(self.module_steps):
            if steps < self.steps_per_module:
                return m
        return len(self.modules) - 1

    def active_optimizers(self) -> list[int]:
        if self.mode == "sequential":
            return [self.active_module]
        return list(range(len(self.modules)))

    def after_step(self, stepped: list[int]) -> None:
        for m in stepped:
            self.module_steps[m] += 1

    def extra_state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "modules": len(self.modules),
            "module_steps": list(self.module_steps),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("modules") != len(self.modules) or state.get("mode") != self.mode:
            raise ValueError(
                f"greedy: the state has {state.get('modules')} modules in mode "
                f"{state.get('mode')!r}, this strategy {len(self.modules)} in {self.mode!r}"
            )
        self.module_steps = [int(s) for s in state["module_steps"]]

    # --------------------------------------------------------------------- training

    def _module_loss(self, m: int, out: torch.Tensor, problem: Problem, batch: MRIBatch):
        with self.autocast(batch):
            image = self.net.image(out, problem)
        loss_fn = self.loss_fn if m == len(self.modules) - 1 else self.module_loss
        return loss_fn(image, batch)

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        if self.mode == "sequential":
            return self._sequential(batch)
        return self._simultaneous(batch)

    def _simultaneous(self, batch: MRIBatch) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with self.autocast(batch):
            problem = self.net.prepare(self.problem(batch))  # module 0 owns the prologue
            state = self.net.init_state(problem)
        for m, module in enumerate(self.modules):
            with self.autocast(batch):
                out = module(state, problem)
            loss = self._module_loss(m, out, problem, batch)
            metrics[f"loss/module_{m}"] = self.check_loss(loss, f"module {m}")
            loss.backward()
            del loss
            if m == 0:
                problem = problem.detach()
            state = out.detach()
            del out
        metrics["loss"] = metrics[f"loss/module_{len(self.modules) - 1}"]
        return metrics

    def _sequential(self, batch: MRIBatch) -> dict[str, float]:
        active = self.active_module
        # the prologue belongs to module 0: with grad only while module 0 trains
        grad_mode = torch.enable_grad() if active == 0 else torch.no_grad()
        with grad_mode, self.autocast(batch):
            problem = self.net.prepare(self.problem(batch))
            state = self.net.init_state(problem)
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
            f"Greedy(modules={len(self.modules)}, mode={self.mode!r}, step={self.step}, "
            f"module_steps={self.module_steps})"
        )
