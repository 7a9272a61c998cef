"""A bound on the spectral norm of a network's convolutions, for invertible (MEL) training.

Memory-efficient learning (MEL) rebuilds the input ``z`` of a residual denoiser
``R(z) = z + g(z)`` from its output by the fixed-point iteration ``z <- R(z)_out - g(z)``, which
converges only where ``g`` is a contraction (i-ResNet, Behrmann et al. 2019). Bounding the
spectral norm of every convolution's weight (as an ``(out, in * kernel)`` matrix, as spectral
normalisation does; Miyato et al. 2018) bounds ``g``'s Lipschitz constant in practice, though not
strictly (a convolution's operator norm can exceed its weight matrix's, and the regulariser's
per-image normalisation adds a factor): the training metric ``inversion_error`` tells whether it
suffices.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class SpectralBound(nn.Module):
    """Parametrisation ``W -> W * min(1, bound / ||W||_2)`` of a convolution weight
    ``(out, in, *kernel)``; ``||W||_2`` is the largest singular value of ``W`` as a matrix."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        if not bound > 0:
            raise ValueError(f"spectral bound must be > 0, got {bound}")
        self.bound = float(bound)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        sigma = torch.linalg.matrix_norm(weight.flatten(1), ord=2)
        return weight * torch.clamp(self.bound / sigma.clamp_min(1e-12), max=1.0)

    def extra_repr(self) -> str:
        return f"bound={self.bound:g}"


def bound_spectral_norms_(module: nn.Module, bound: float) -> nn.Module:
    """Parametrise every convolution weight in ``module`` with :class:`SpectralBound`; returns
    ``module``."""
    convs = [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    for conv in convs:
        parametrize.register_parametrization(conv, "weight", SpectralBound(bound))
    return module
