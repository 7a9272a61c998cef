"""Centred, orthonormal FFTs: the one implementation of the project's convention.

Convention (fastMRI, sigpy, BART ``fft -u``): ``ifftshift -> fftn(norm="ortho") -> fftshift``,
so the DC sample sits at index ``N // 2`` of each transformed axis, for odd and even ``N``.
:func:`fftnc` / :func:`ifftnc` transform the last ``ndim`` axes of a tensor; :func:`centred_fft`
transforms any given axes of a torch tensor or a numpy array. Under ``torch.export`` (ONNX export,
:mod:`gleam_mri.export`) the shifts are written as a split and a concatenation of the real view,
which the exporter maps for any image size (its complex ``roll`` needs static sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _axes(x: torch.Tensor, ndim: int) -> tuple[int, ...]:
    if ndim < 1:
        raise ValueError(f"fft ndim must be >= 1, got {ndim}")
    if ndim > x.ndim:
        raise ValueError(f"cannot transform {ndim} axes of a tensor with {x.ndim} axes")
    return tuple(range(-ndim, 0))


# whether the code runs under torch.export (ONNX export); torch < 2.6 exports nothing
exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def _shift(x: torch.Tensor, axes: tuple[int, ...], inverse: bool) -> torch.Tensor:
    """``fftshift`` (``ifftshift`` when ``inverse``) of complex ``x`` by halves of its real view
    (negative ``axes``)."""
    real = torch.view_as_real(x)
    for axis in axes:
        n = x.shape[axis]
        first = (n + 1) // 2 if not inverse else n // 2  # the part that moves to the end
        dim = axis - 1  # the real view's trailing (re, im) axis
        real = torch.cat([real.narrow(dim, first, n - first), real.narrow(dim, 0, first)], dim)
    return torch.view_as_complex(real)


def centred_fft(x: ArrayT, axes: Sequence[int], inverse: bool = False) -> ArrayT:
    """Centred orthonormal (inverse) FFT of complex ``x`` ``(..., *N)`` over ``axes``.

    ``x`` is a torch tensor (transformed with ``torch.fft``) or a numpy array (``numpy.fft``);
    the result has the shape of ``x`` and the same kind. No argument checks: callers pass valid
    axes (this is the hot path of :class:`~gleam_mri.physics.operators.SenseOp`).
    """
    axes = tuple(axes)
    if isinstance(x, torch.Tensor) and exporting():
        axes = tuple(a - x.ndim if a >= 0 else a for a in axes)
        x = (torch.fft.ifftn if inverse else torch.fft.fftn)(
            _shift(x, axes, True), dim=axes, norm="ortho"
        )
        return _shift(x, axes, False)
    if isinstance(x, torch.Tensor):
        x = torch.fft.ifftshift(x, dim=axes)
        x = (torch.fft.ifftn if inverse else torch.fft.fftn)(x, dim=axes, norm="ortho")
        return torch.fft.fftshift(x, dim=axes)
    transform = np.fft.ifftn if inverse else np.fft.fftn
    x = transform(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho")
    return np.fft.fftshift(x, axes=axes)


def fftnc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal FFT of complex ``x`` ``(..., *N)`` over its last ``ndim`` axes."""
    return centred_fft(x, _axes(x, ndim))


def ifftnc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal inverse FFT of complex ``x`` ``(..., *N)``, last ``ndim`` axes."""
    return centred_fft(x, _axes(x, ndim), inverse=True)
