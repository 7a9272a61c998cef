"""Invertible (memory-free) training: rebuild each iteration's input from its output.

The forward pass runs without a graph and keeps only the final state. Backward walks the
iterations from last to first: each iteration's input is rebuilt from its output, its forward is
recomputed with grad enabled and the running state-gradient is backpropagated through it, which
accumulates its parameters' gradients and yields the gradient of its input. Activation memory is
that of one iteration, independent of depth. Two ways to rebuild an input (``inversion``):

- ``"coupling"``: the network is built invertible (``model.invertible=true``): each iteration sits
  in an additive :class:`~gleam_mri.models.unrolled.Coupling` with an exact inverse; a different
  architecture (pair state, the regulariser evaluated twice per iteration).
- ``"fixed-point"``: MEL (memory-efficient learning, the GLEAM paper's invertible baseline) on the
  same network as the other strategies: each iteration is inverted approximately by
  ``fixed_point_iters`` fixed-point iterations (``fixed_point_inverse`` of
  :mod:`gleam_mri.models.iterations`); gradients are then approximate.

Either way the walk back ends at a rebuilt initial state, which is known (``x0`` or ``y``): the
metric ``inversion_error`` is its relative error, logged every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.physics.operators import SenseOp
from gleam_mri.schema import ConfigError, at_least
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import Strategy, StrategyOptions
from gleam_mri.training.strategies.costs import Costs, Terms

if TYPE_CHECKING:
    from gleam_mri.config import Config, ModelConfig

INVERSIONS = ("coupling", "fixed-point")


@dataclass
class InvertibleOptions(StrategyOptions):
    """``strategy.inversion`` (``coupling``: exact, needs ``model.invertible=true``;
    ``fixed-point``: MEL on the ordinary network) and ``fixed_point_iters``."""

    inversion: Literal["coupling", "fixed-point"] = "coupling"
    fixed_point_iters: int = field(default=5, metadata=at_least(1))

    def network(self, model: ModelConfig) -> ModelConfig:
        """The coupled network for ``coupling``, the ordinary one for ``fixed-point`` (MEL)."""
        return dataclasses.replace(model, invertible=self.inversion == "coupling")

    def check(self, cfg: Config) -> None:
        if (self.inversion == "coupling") != cfg.model.invertible:
            need = "true" if self.inversion == "coupling" else "false"
            raise ConfigError(
                f"inversion {self.inversion!r} trains a network built with model.invertible={need}",
                "strategy.inversion",
            )


def _leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    """A detached copy requiring grad where ``t`` requires grad, else ``t`` itself."""
    if t is None or not t.requires_grad:
        return t
    return t.detach().requires_grad_(True)


def leaf_problem(problem: Problem) -> tuple[Problem, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A copy of ``problem`` whose grad-requiring tensors are fresh leaves.

    Returns the copy and the pairs ``(original, leaf)``: after the leaves have accumulated their
    ``.grad`` over all iterations, ``torch.autograd.backward(originals, leaf grads)`` carries
    them through whatever produced the originals (e.g. a prologue with parameters).
    """
    op = problem.op
    maps, mask = _leaf(op.maps), _leaf(op.mask)
    y, x0 = _leaf(problem.y), _leaf(problem.x0)
    new_op = op if (maps is op.maps and mask is op.mask) else SenseOp(maps, mask, op.fft_ndim)
    leaf = Problem(op=new_op, y=y, x0=x0)
    pairs = [
        (orig, new)
        for orig, new in ((op.maps, maps), (op.mask, mask), (problem.y, y), (problem.x0, x0))
        if orig is not None and orig is not new
    ]
    extra = {f.name for f in fields(Problem)} - {"op", "y", "x0"}
    if extra:  # a future field would silently lose its gradient: fail loudly instead
        raise TypeError(f"invertible: Problem fields {sorted(extra)} are not handled")
    return leaf, pairs


class InvertibleCosts(Costs):
    """One iteration's activations and the states: ``f_i(B) + D * g_i(B)`` (``g_i`` ~ 0), fitted
    from invertible steps at depths 1 and 2 (of the network ``strategy.inversion`` trains)."""

    calibration = (1, 2)
    line_terms = ("f_i", "g_i")
    floor_target = 1.85

    def activations(
        self, terms: Terms, depth: int, batch: int, setting: Mapping[str, int | None]
    ) -> tuple[float, float]:
        return terms["f_i"](batch) + depth * terms["g_i"](batch), 0.0


class Invertible(Strategy):
    """Exact end-to-end gradients with O(1) activation memory, for ``invertible=True`` nets.

    Requires every iteration to have an exact ``inverse`` (the :class:`Coupling` that
    ``UnrolledNet(..., invertible=True)`` wraps around each iteration). A prologue with
    parameters (VarNet's learned maps) runs once with grad; its output tensors are given to the
    iterations as detached leaves whose gradients are accumulated and finally backpropagated
    through the prologue.
    """

    name = "invertible"
    Options = InvertibleOptions
    costs = InvertibleCosts()

    def __init__(
        self,
        net: UnrolledNet,
        loss_fn: LossFn,
        *,
        inversion: str = "coupling",
        fixed_point_iters: int = 5,
        **kwargs: Any,
    ) -> None:
        if inversion not in INVERSIONS:
            raise ValueError(
                f"invertible: inversion must be one of {INVERSIONS}, got {inversion!r}"
            )
        if inversion == "coupling" and not getattr(net, "invertible", False):
            raise ValueError(
                "invertible training needs an invertible network: build the model with "
                "invertible=True (each iteration wrapped in an exactly invertible Coupling), or "
                "use inversion='fixed-point' (MEL) on the ordinary network"
            )
        if inversion == "fixed-point" and getattr(net, "invertible", False):
            raise ValueError("invertible: fixed-point inversion (MEL) needs the ordinary network")
        method = "inverse" if inversion == "coupling" else "fixed_point_inverse"
        missing = [
            f"{i} ({type(it).__name__})"
            for i, it in enumerate(net.iterations)
            if not hasattr(it, method)
        ]
        if missing:
            raise ValueError(f"invertible: iterations {missing} have no {method}()")
        if isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, int):
            raise TypeError(f"fixed_point_iters must be an int, got {fixed_point_iters!r}")
        if fixed_point_iters < 1:
            raise ValueError(f"fixed_point_iters must be >= 1, got {fixed_point_iters}")
        self.inversion = inversion
        self.fixed_point_iters = fixed_point_iters
        super().__init__(net, loss_fn, **kwargs)

    def _invert(self, iteration: torch.nn.Module, out: torch.Tensor, problem: Problem):
        if self.inversion == "coupling":
            return iteration.inverse(out, problem)
        return iteration.fixed_point_inverse(out, problem, self.fixed_point_iters)

    def forward_backward(self, batch: MRIBatch) -> dict[str, float]:
        net = self.net
        with self.autocast(batch):
            prepared = net.prepare(self.problem(batch))  # with grad: the prologue's graph
        problem, pairs = leaf_problem(prepared)

        # forward without a graph, keeping only the final state
        with torch.no_grad(), self.autocast(batch):
            state = net.run(net.init_state(problem), problem)

        # loss on the read-out, gradient w.r.t. the final state (and the problem's leaves)
        state = state.detach().requires_grad_(True)
        with self.autocast(batch):
            image = net.image(state, problem)
        loss = self.loss_fn(image, batch)
        value = self.check_loss(loss)
        loss.backward()
        grad = state.grad
        output = state.detach()
        del state, image, loss

        # walk back: reconstruct each input, recompute the step with grad, backprop
        for iteration in reversed(net.iterations):
            with torch.no_grad(), self.autocast(batch):
                inp = self._invert(iteration, output, problem)
            inp = inp.detach().requires_grad_(True)
            with torch.enable_grad(), self.autocast(batch):
                out = iteration(inp, problem)
            out.backward(grad)
            grad = inp.grad if inp.grad is not None else torch.zeros_like(inp)
            output = inp.detach()
            del inp, out

        # the initial state came from the problem (x0 or y): pass its gradient on
        with torch.enable_grad(), self.autocast(batch):
            init = net.init_state(problem)
        if init.requires_grad:
            init.backward(grad)
        with torch.no_grad():  # the walk back ended at a rebuilt initial state: how close?
            error = float((output - init).norm() / init.norm().clamp_min(1e-30))

        # and the problem's leaves through the prologue
        originals = [orig for orig, leaf in pairs if leaf.grad is not None]
        grads = [leaf.grad for _, leaf in pairs if leaf.grad is not None]
        if originals:
            torch.autograd.backward(originals, grads)
        return {"loss": value, "inversion_error": error}
