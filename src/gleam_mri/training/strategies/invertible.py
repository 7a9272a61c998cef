"""Invertible (memory-free) training: rebuild each iteration's input from its output.

The forward pass runs without a graph and keeps only the final state. Backward walks the
iterations from last to first: each :class:`~gleam_mri.models.unrolled.Coupling` reconstructs
its input exactly with ``inverse``, recomputes its forward with grad enabled and backpropagates
the running state-gradient, which accumulates its parameters' gradients and yields the gradient
of its input. Activation memory is that of one iteration, independent of depth.
"""

from __future__ import annotations

from dataclasses import fields

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.models.unrolled import Problem, UnrolledNet
from gleam_mri.physics.operators import SenseOp
from gleam_mri.training.losses import LossFn
from gleam_mri.training.strategies.base import Strategy


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


class Invertible(Strategy):
    """Exact end-to-end gradients with O(1) activation memory, for ``invertible=True`` nets.

    Requires every iteration to have an exact ``inverse`` (the :class:`Coupling` that
    ``UnrolledNet(..., invertible=True)`` wraps around each iteration). A prologue with
    parameters (VarNet's learned maps) runs once with grad; its output tensors are given to the
    iterations as detached leaves whose gradients are accumulated and finally backpropagated
    through the prologue.
    """

    name = "invertible"

    def __init__(self, net: UnrolledNet, loss_fn: LossFn, **kwargs) -> None:
        if not getattr(net, "invertible", False):
            raise ValueError(
                "invertible training needs an invertible network: build the model with "
                "invertible=True (each iteration wrapped in an exactly invertible Coupling)"
            )
        missing = [i for i, it in enumerate(net.iterations) if not hasattr(it, "inverse")]
        if missing:
            raise ValueError(f"invertible: iterations {missing} have no inverse()")
        super().__init__(net, loss_fn, **kwargs)

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
                inp = iteration.inverse(output, problem)
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

        # and the problem's leaves through the prologue
        originals = [orig for orig, leaf in pairs if leaf.grad is not None]
        grads = [leaf.grad for _, leaf in pairs if leaf.grad is not None]
        if originals:
            torch.autograd.backward(originals, grads)
        return {"loss": value}
