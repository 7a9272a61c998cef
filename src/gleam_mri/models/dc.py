"""Data-consistency (DC) layers of unrolled networks.

- :class:`GradientDC`: one gradient step on ``||A x - y||^2 / 2`` (proximal gradient descent).
- :class:`ProximalDC`: MoDL's proximal step ``argmin_x ||A x - y||^2 + lam ||x - z||^2``, solved by
  conjugate gradient, with an implicit backward whose memory does not grow with the CG iterations.
- :class:`KspaceDC`: E2E-VarNet's soft data consistency in k-space.

Images are complex ``(B, *D)``, k-space and coil maps complex ``(B, C, *D)`` (complex64 or
complex128); ``A`` is a :class:`~gleam_mri.physics.operators.SenseOp` (2D, 3D or cine). The layers
take the operator and tensors explicitly and keep no per-batch state.

Positive weights (the step size and ``lam``) are stored as an unconstrained real ``raw`` value and
mapped to ``softplus(raw) + 1e-8``, so that any optimizer update keeps them positive (the floor
survives float32 underflow of ``softplus``); the initial value is exact
(``raw = softplus^{-1}(init - 1e-8)``). Non-learnable weights are buffers (they follow ``.to()``
and appear in the ``state_dict``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gleam_mri.linalg import conjugate_gradient
from gleam_mri.physics.operators import SenseOp

_FLOOR = 1e-8  # lower bound of the positive weights


def _inverse_positive(value: float) -> float:
    """``raw`` with ``_positive(raw) == value`` for ``value > _FLOOR`` (numerically stable)."""
    value = value - _FLOOR
    return value + math.log(-math.expm1(-value))


def _positive(raw: torch.Tensor) -> torch.Tensor:
    """``softplus(raw) + _FLOOR``: positive for every real ``raw``, with a non-zero gradient."""
    return F.softplus(raw) + _FLOOR


def _weight(module: nn.Module, name: str, value: float, learnable: bool) -> None:
    """Register the real scalar ``name`` as a parameter (learnable) or a buffer."""
    tensor = torch.tensor(float(value))
    if learnable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= _FLOOR:
        raise ValueError(f"{name} must be a finite number > {_FLOOR:g}, got {value}")


def _check_complex(**tensors: torch.Tensor) -> None:
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not torch.is_complex(tensor):
            raise TypeError(f"{name} must be a complex tensor, got {tensor.dtype}")


def _check_problem(x: torch.Tensor, op: object, y: torch.Tensor, name: str = "x") -> None:
    """Image ``x`` ``(B, *D)`` (called ``name``) and k-space ``y`` ``(B, C, *D)`` fit ``op``."""
    _check_complex(**{name: x, "y": y})
    if not isinstance(op, SenseOp):
        raise TypeError(f"op must be a SenseOp, got {type(op).__name__}")
    if x.ndim != op.maps.ndim - 1 or y.ndim != op.maps.ndim:
        raise ValueError(
            f"expected image (B, *D) and k-space (B, C, *D) for maps {tuple(op.maps.shape)}, "
            f"got image {tuple(x.shape)} and k-space {tuple(y.shape)}"
        )
    try:
        kspace = torch.broadcast_shapes(op.maps.shape, x.unsqueeze(1).shape)
    except RuntimeError:
        kspace = None
    if kspace != y.shape:
        raise ValueError(
            f"image {tuple(x.shape)}, k-space {tuple(y.shape)} and maps {tuple(op.maps.shape)} "
            "do not match"
        )


class GradientDC(nn.Module):
    """One gradient step on ``||A x - y||^2 / 2``: ``x - step * A^H (A x - y)``.

    ``step = softplus(raw_step) + 1e-8 > 0``. The default ``step_init = 1.0`` is ``1 / L`` for
    maps with ``sum_c |S_c|^2 = 1`` (then ``||A^H A|| <= 1`` with the orthonormal FFT). With
    ``step_max`` the step is bounded instead, ``step = step_max * sigmoid(raw_step)`` (default
    start ``step_max / 2``): ``step_max < 1`` keeps the step invertible (``I - step A^H A``
    positive definite, with an inverse of norm ``<= 1 / (1 - step_max)``), which memory-efficient
    learning (MEL) needs to rebuild the step's input from its output.

    ``forward(x, op, y)``: image ``x`` ``(B, *D)``, measured k-space ``y`` ``(B, C, *D)`` -> image
    ``(B, *D)`` of the dtype of ``x``. It runs in every iteration and checks nothing: shapes are
    checked where the data enter (:class:`~gleam_mri.data.batch.MRIBatch`, ``SenseOp``).
    """

    def __init__(
        self, step_init: float | None = None, learnable: bool = True, step_max: float | None = None
    ) -> None:
        super().__init__()
        if step_max is not None:
            _check_positive("step_max", step_max)
        if step_init is None:
            step_init = 1.0 if step_max is None else step_max / 2
        _check_positive("step_init", step_init)
        if step_max is None:
            raw = _inverse_positive(step_init)
        elif step_init < step_max:
            raw = math.log(step_init / (step_max - step_init))  # logit(step_init / step_max)
        else:
            raise ValueError(f"step_init must be < step_max = {step_max}, got {step_init}")
        _weight(self, "raw_step", raw, learnable)
        self.step_max = step_max

    @property
    def step(self) -> torch.Tensor:
        """The positive step size, a real 0-dim tensor."""
        if self.step_max is None:
            return _positive(self.raw_step)
        return self.step_max * torch.sigmoid(self.raw_step)

    def forward(self, x: torch.Tensor, op: SenseOp, y: torch.Tensor) -> torch.Tensor:
        step = self.step.to(x.real.dtype)
        return x - step * op.adjoint(op.forward(x) - y)

    def inverse(self, z: torch.Tensor, op: SenseOp, y: torch.Tensor, iters: int) -> torch.Tensor:
        """Approximate ``x`` with ``forward(x, op, y) = z``, image ``(B, *D)``.

        With ``step_max <= 1``: ``(I - step A^H A) x = z - step A^H y`` (positive definite) by
        ``iters`` CG iterations from ``z``. Unbounded: ``iters`` fixed-point iterations
        ``x <- z + step A^H (A x - y)`` from ``z``, a contraction only where
        ``step ||A^H A|| < 1`` (what the data replace is left as in ``z``)."""
        step = self.step.to(z.real.dtype)
        if self.step_max is not None and self.step_max <= 1:

            def normal(x: torch.Tensor) -> torch.Tensor:
                return x - step * op.adjoint(op.forward(x))

            return conjugate_gradient(normal, z - step * op.adjoint(y), x0=z, max_iter=iters)
        x = z
        for _ in range(iters):
            x = z + step * op.adjoint(op.forward(x) - y)
        return x

    def extra_repr(self) -> str:
        learnable = isinstance(self.raw_step, nn.Parameter)
        bound = "" if self.step_max is None else f", step_max={self.step_max:g}"
        return f"step={self.step.item():.4g}{bound}, learnable={learnable}"


class _ProximalSolve(torch.autograd.Function):
    """``x = (A^H A + lam I)^{-1} (A^H y + lam z)`` by CG, with an implicit backward.

    Saved for backward: ``x, z, lam, y`` and the operator's ``maps, mask`` only (no CG iterates).
    With ``M = A^H A + lam I`` Hermitian positive definite and PyTorch's complex convention
    (``grad`` of a real loss w.r.t. ``w`` is ``dL/dRe w + i dL/dIm w``, so a C-linear map ``K``
    back-propagates ``g -> K^H g``), for the upstream gradient ``g = dL/dx``:

    - ``v = M^{-1} g`` (one more CG solve, started from zero, same ``max_iter`` and ``tol``);
    - ``grad_z = lam v`` (``x`` is ``lam M^{-1} z`` plus terms free of ``z``; ``M^H = M``);
    - ``grad_lam = Re <v, z - x>`` summed to the shape of ``lam`` (``M dx/dlam = z - x``);
    - ``grad_y = A v``;
    - ``grad_maps``: by the implicit function theorem, the gradient of ``Re <v, A^H (y - A x)>``
      w.r.t. the maps with ``x`` and ``v`` held fixed (autograd through one ``A`` and ``A^H``).

    These are exact for the exact solve; a truncated CG gives the gradient of the exact solution
    at the approximate ``x``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        z: torch.Tensor,
        lam: torch.Tensor,
        y: torch.Tensor,
        maps: torch.Tensor,
        mask: torch.Tensor | None,
        fft_ndim: int,
        max_iter: int,
        tol: float,
    ) -> torch.Tensor:
        op = SenseOp(maps, mask, fft_ndim)
        rhs = op.adjoint(y) + lam * z
        x = conjugate_gradient(lambda v: op.gram(v) + lam * v, rhs, max_iter=max_iter, tol=tol)
        ctx.save_for_backward(x, z, lam, y, maps, mask)
        ctx.fft_ndim, ctx.max_iter, ctx.tol = fft_ndim, max_iter, tol
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, z, lam, y, maps, mask = ctx.saved_tensors
        op = SenseOp(maps, mask, ctx.fft_ndim)
        v = conjugate_gradient(
            lambda u: op.gram(u) + lam * u, grad_x, max_iter=ctx.max_iter, tol=ctx.tol
        )
        need_z, need_lam, need_y, need_maps = ctx.needs_input_grad[:4]
        grad_z = lam * v if need_z else None
        grad_lam = None
        if need_lam:
            grad_lam = (v.conj() * (z - x)).real.sum_to_size(lam.shape)
        grad_y = op.forward(v) if need_y else None
        grad_maps = None
        if need_maps:
            with torch.enable_grad():
                leaf = maps.detach().requires_grad_(True)
                op_leaf = SenseOp(leaf, mask, ctx.fft_ndim)
                residual = op_leaf.adjoint(y - op_leaf.forward(x))
                (grad_maps,) = torch.autograd.grad(residual, leaf, grad_outputs=v)
        return grad_z, grad_lam, grad_y, grad_maps, None, None, None, None


def proximal_solve(
    z: torch.Tensor,
    op: SenseOp,
    y: torch.Tensor,
    lam: torch.Tensor | float,
    max_iter: int = 10,
    tol: float = 1e-6,
) -> torch.Tensor:
    """``argmin_x ||A x - y||^2 + lam ||x - z||^2`` by CG, differentiated implicitly.

    ``z`` ``(B, *D)`` complex, ``y`` ``(B, C, *D)`` complex, ``lam`` a positive real tensor
    (or a float) broadcastable to ``z`` (0-dim for one weight) -> ``x`` ``(B, *D)``. Gradients reach
    ``z``, ``lam``, ``y`` and ``op.maps`` when they require them (none reaches the mask); the
    backward stores no CG iterates.
    """
    _check_problem(z, op, y, name="z")
    if not isinstance(lam, torch.Tensor):
        _check_positive("lam", lam)
        lam = torch.tensor(float(lam))
    if torch.is_complex(lam):
        raise TypeError("lam must be a real tensor")
    lam = lam.to(device=z.device, dtype=z.real.dtype)
    return _ProximalSolve.apply(z, lam, y, op.maps, op.mask, op.fft_ndim, max_iter, tol)


class ProximalDC(nn.Module):
    """MoDL's data-consistency step ``argmin_x ||A x - y||^2 + lam ||x - z||^2``.

    Solves ``(A^H A + lam I) x = A^H y + lam z`` with ``max_iter`` CG iterations started from zero
    (stopping per batch item at relative residual ``tol``); ``lam = softplus(raw_lam) + 1e-8 > 0``.
    The backward is implicit (see :class:`_ProximalSolve`): one more CG solve, and memory
    independent of ``max_iter``.

    ``forward(z, op, y)``: image ``z`` ``(B, *D)``, measured k-space ``y`` ``(B, C, *D)`` -> image
    ``(B, *D)`` of the dtype of ``z``.
    """

    def __init__(
        self, lam_init: float = 0.05, learnable: bool = True, max_iter: int = 10, tol: float = 1e-6
    ) -> None:
        super().__init__()
        _check_positive("lam_init", lam_init)
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter}")
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tol must be a finite number >= 0, got {tol}")
        _weight(self, "raw_lam", _inverse_positive(lam_init), learnable)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    @property
    def lam(self) -> torch.Tensor:
        """The positive regularisation weight, a real 0-dim tensor."""
        return _positive(self.raw_lam)

    def forward(self, z: torch.Tensor, op: SenseOp, y: torch.Tensor) -> torch.Tensor:
        return proximal_solve(z, op, y, self.lam, max_iter=self.max_iter, tol=self.tol)

    def extra_repr(self) -> str:
        learnable = isinstance(self.raw_lam, nn.Parameter)
        return (
            f"lam={self.lam.item():.4g}, learnable={learnable}, max_iter={self.max_iter}, "
            f"tol={self.tol:g}"
        )


class KspaceDC(nn.Module):
    """E2E-VarNet's soft data consistency: ``k - eta * mask * (k - y)``.

    ``eta`` is a real weight, initialised to 1.0 and unconstrained in sign, as fastMRI's VarNet
    ``dc_weight`` (``eta = 1`` replaces the sampled samples of ``k`` by ``y``).

    ``forward(k, y, mask)``: k-space estimate ``k`` and measured ``y`` ``(B, C, *D)`` complex, mask
    real or bool broadcastable to them (``None``: fully sampled) -> k-space ``(B, C, *D)``.
    """

    def __init__(self, eta_init: float = 1.0, learnable: bool = True) -> None:
        super().__init__()
        if not math.isfinite(eta_init):
            raise ValueError(f"eta_init must be finite, got {eta_init}")
        _weight(self, "eta", eta_init, learnable)

    def forward(self, k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        _check_complex(k=k, y=y)
        if k.shape != y.shape:
            raise ValueError(
                f"k-space estimate {tuple(k.shape)} and measurement {tuple(y.shape)} differ"
            )
        diff = k - y
        if mask is not None:
            if torch.is_complex(mask):
                raise TypeError("the mask must be real or bool, not complex")
            try:
                fits = torch.broadcast_shapes(mask.shape, k.shape) == k.shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not broadcast to k-space "
                    f"{tuple(k.shape)}"
                )
            diff = diff * mask.to(k.real.dtype)
        return k - self.eta.to(k.real.dtype) * diff

    def extra_repr(self) -> str:
        return f"eta={self.eta.item():.4g}, learnable={isinstance(self.eta, nn.Parameter)}"
