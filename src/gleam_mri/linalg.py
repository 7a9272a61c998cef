"""Batched linear algebra shared by the networks and the classical reconstructions."""

from __future__ import annotations

from collections.abc import Callable

import torch

# whether the code runs under torch.export (ONNX export); torch < 2.6 exports nothing
exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched real inner product ``Re <a, b>``: ``(B, *D) x (B, *D) -> (B,)``."""
    return (a.conj() * b).real.flatten(1).sum(dim=1)


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 10,
    tol: float = 0.0,
) -> torch.Tensor:
    """Solve ``normal(x) = rhs`` for a Hermitian positive (semi)definite map, per batch item.

    ``rhs`` and ``x0`` are ``(B, *D)``; each item has its own step sizes and stops updating when
    its relative residual falls below ``tol``. Returns ``x`` ``(B, *D)``.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs = _dot(r, r)
    rhs_norm = _dot(rhs, rhs).clamp_min(torch.finfo(rs.dtype).tiny)
    shape = (-1,) + (1,) * (rhs.ndim - 1)
    for _ in range(max_iter):
        active = rs / rhs_norm > tol**2
        if not exporting() and not bool(active.any()):
            break  # (exported graphs run every iteration: inactive items stay as they are)
        ap = normal(p)
        denom = _dot(p, ap)
        alpha = torch.where(active & (denom > 0), rs / denom.clamp_min(1e-30), 0.0)
        x = x + alpha.view(shape) * p
        r = r - alpha.view(shape) * ap
        rs_new = _dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), 0.0)
        p = r + beta.view(shape) * p
        rs = torch.where(active, rs_new, rs)
    return x
