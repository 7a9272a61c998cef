"""Reusable assertions for linear operators (adjointness, linearity, vjp = adjoint)."""

from __future__ import annotations

import torch

from gleam_mri.physics.operators import LinearOperator


def randn_complex(*shape: int, dtype: torch.dtype = torch.complex128, generator=None, device=None):
    """Standard complex Gaussian tensor of ``shape``."""
    return torch.randn(*shape, dtype=dtype, generator=generator, device=device)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex inner product ``<a, b> = sum(conj(a) * b)``."""
    return (a.conj() * b).sum()


def assert_adjoint(op: LinearOperator, x: torch.Tensor, y: torch.Tensor, rtol: float) -> None:
    """``<A x, y> == <x, A^H y>`` to relative tolerance ``rtol``, shapes checked first."""
    ax = op.forward(x)
    ahy = op.adjoint(y)
    assert ax.shape == y.shape, f"forward gives {tuple(ax.shape)}, expected {tuple(y.shape)}"
    assert ahy.shape == x.shape, f"adjoint gives {tuple(ahy.shape)}, expected {tuple(x.shape)}"
    lhs, rhs = inner(ax, y), inner(x, ahy)
    err = (lhs - rhs).abs() / max(lhs.abs().item(), rhs.abs().item())
    assert err <= rtol, f"<Ax,y>={lhs.item()} <x,A^H y>={rhs.item()} rel. error {err.item():.2e}"


def assert_linear(op: LinearOperator, x1: torch.Tensor, x2: torch.Tensor, rtol: float) -> None:
    """``A(a x1 + b x2) == a A x1 + b A x2``."""
    a, b = 0.7 - 0.3j, -1.2 + 0.5j
    lhs = op.forward(a * x1 + b * x2)
    rhs = a * op.forward(x1) + b * op.forward(x2)
    assert torch.allclose(lhs, rhs, rtol=rtol, atol=rtol * rhs.abs().max().item())


def assert_vjp_is_adjoint(op: LinearOperator, x: torch.Tensor, y: torch.Tensor, rtol: float):
    """Autograd's vector-Jacobian product of ``forward`` equals ``adjoint``.

    For a C-linear map, PyTorch's convention gives ``grad_x Re<A x, y> = A^H y``.
    """
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(inner(op.forward(x), y).real, x)
    expected = op.adjoint(y)
    assert torch.allclose(grad, expected, rtol=rtol, atol=rtol * expected.abs().max().item())
