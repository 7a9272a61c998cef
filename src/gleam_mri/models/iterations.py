"""The unrolled iterations of PGD (GLEAM's network) and MoDL, on an image state ``(B, *D)``."""

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


class MoDLIteration(Iteration):
    """MoDL step: ``z = R(x)``, then ``x' = argmin ||A x - y||^2 + lam ||x - z||^2`` by CG."""

    def __init__(self, regularizer: nn.Module, dc: ProximalDC) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.dc = dc

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        return self.dc(self.regularizer(state), problem.op, problem.y)
