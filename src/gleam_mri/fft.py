"""Centred, orthonormal FFTs over the last ``ndim`` axes.

Convention (fastMRI, sigpy, BART ``fft -u``): ``ifftshift -> fftn(norm="ortho") -> fftshift``,
so the DC sample sits at index ``N // 2`` of each transformed axis, for odd and even ``N``.
"""

from __future__ import annotations

import torch


def _axes(x: torch.Tensor, ndim: int) -> tuple[int, ...]:
    if ndim < 1:
        raise ValueError(f"fft ndim must be >= 1, got {ndim}")
    if ndim > x.ndim:
        raise ValueError(f"cannot transform {ndim} axes of a tensor with {x.ndim} axes")
    return tuple(range(-ndim, 0))


def fftnc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal FFT of complex ``x`` ``(..., *N)`` over its last ``ndim`` axes."""
    axes = _axes(x, ndim)
    x = torch.fft.ifftshift(x, dim=axes)
    x = torch.fft.fftn(x, dim=axes, norm="ortho")
    return torch.fft.fftshift(x, dim=axes)


def ifftnc(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal inverse FFT of complex ``x`` ``(..., *N)``, last ``ndim`` axes."""
    axes = _axes(x, ndim)
    x = torch.fft.ifftshift(x, dim=axes)
    x = torch.fft.ifftn(x, dim=axes, norm="ortho")
    return torch.fft.fftshift(x, dim=axes)
