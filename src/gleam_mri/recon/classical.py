"""Classical reconstructions through the same operator the networks use: zero-filled, CG-SENSE."""

from __future__ import annotations

import torch

from gleam_mri.linalg import conjugate_gradient
from gleam_mri.physics.operators import SenseOp


def zero_filled(op: SenseOp, y: torch.Tensor) -> torch.Tensor:
    """Coil-combined zero-filled image ``A^H y``: k-space ``(B, C, *D)`` -> image ``(B, *D)``."""
    return op.adjoint(y)


def cg_sense(
    op: SenseOp,
    y: torch.Tensor,
    lam: float = 1e-3,
    max_iter: int = 20,
    tol: float = 1e-6,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """CG-SENSE with Tikhonov weight: ``argmin_x ||A x - y||^2 + lam ||x||^2``.

    k-space ``y`` ``(B, C, *D)`` -> image ``(B, *D)``.
    """
    if lam < 0:
        raise ValueError(f"the Tikhonov weight must be >= 0, got {lam}")
    return conjugate_gradient(
        lambda x: op.gram(x) + lam * x, op.adjoint(y), x0=x0, max_iter=max_iter, tol=tol
    )
