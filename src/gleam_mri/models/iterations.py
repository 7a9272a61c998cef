"""The unrolled iterations of PGD (GLEAM's network) and MoDL, on an image state ``(B, *D)``.

Both can be inverted approximately by fixed-point iteration (``fixed_point_inverse``), as in
memory-efficient learning (MEL; Kellman et al., IEEE TCI 2020), the invertible baseline of the
GLEAM paper: the residual denoiser ``R(z) = z + g(z)`` by ``z <- x' - g(z)`` (exact when ``g`` is a
contraction and enough iterations run), PGD's gradient step ``G(x) = x - a A^H (A x - y)`` by
``x <- z + a A^H (A x - y)`` (a contraction only where ``a ||A^H A|| < 1``: components fully
replaced by the data, ``a = 1`` on sampled k-space, are not recovered) or, with a bounded step
(``model.dc.step_max <= 1``), by CG on ``(I - a A^H A) x = z - a A^H y``
(:meth:`GradientDC.inverse`), and MoDL's proximal step in closed form,
``R(x) = ((A^H A + lam) x' - A^H y) / lam``. A fair MEL on PGD needs the bounded network:
``model.dc.step_max`` and ``model.spectral_bound`` (:mod:`gleam_mri.models.lipschitz`).
"""

from __future__ import annotations

import torch
from torch import nn

from gleam_mri.models.dc import GradientDC, ProximalDC
from gleam_mri.models.unrolled import Iteration, Problem


class PGDIteration(Iteration):
    """Proximal gradient step: ``x' = R(x - step * A^H (A x - y))`` (learned step and denoiser)."""

    def __init__(self, regularizer: nn.Module, dc: GradientDC) -> None:
        super().__init__()
        self.dc = dc
        self.regularizer = regularizer

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        return self.regularizer(self.dc(state, problem.op, problem.y))

    def fixed_point_inverse(self, out: torch.Tensor, problem: Problem, iters: int) -> torch.Tensor:
        """Approximate input ``x`` with ``forward(x) = out`` (``(B, *D)``; see the module)."""
        z = invert_residual(self.regularizer, out, iters)
        return self.dc.inverse(z, problem.op, problem.y, iters)


class MoDLIteration(Iteration):
    """MoDL step: ``z = R(x)``, then ``x' = argmin ||A x - y||^2 + lam ||x - z||^2`` by CG."""

    def __init__(self, regularizer: nn.Module, dc: ProximalDC) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.dc = dc

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        return self.dc(self.regularizer(state), problem.op, problem.y)

    def fixed_point_inverse(self, out: torch.Tensor, problem: Problem, iters: int) -> torch.Tensor:
        """Approximate input ``x`` with ``forward(x) = out`` (``(B, *D)``; see the module)."""
        op, lam = problem.op, self.dc.lam.to(out.real.dtype)
        z = (op.adjoint(op.forward(out)) + lam * out - op.adjoint(problem.y)) / lam
        return invert_residual(self.regularizer, z, iters)


def invert_residual(regularizer: nn.Module, out: torch.Tensor, iters: int) -> torch.Tensor:
    """``z`` with ``regularizer(z) ~= out`` by ``z <- out - (regularizer(z) - z)``, from ``out``."""
    z = out
    for _ in range(iters):
        z = out - (regularizer(z) - z)
    return z
