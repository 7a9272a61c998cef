"""Coil sensitivities: simulated birdcage-like maps and root-sum-of-squares combination.

ESPIRiT estimation from a calibration region lives in :mod:`gleam_mri.physics.espirit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from gleam_mri.fft import centred_fft

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def birdcage_maps(
    n_coils: int,
    shape: Sequence[int],
    radius: float = 1.5,
    n_rings: int | None = None,
    normalize: bool = True,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Simulated birdcage-like coil sensitivities, complex ``(C, *shape)``.

    Coils sit on a cylinder of relative ``radius`` around the field of view (2D: a circle in the
    ``(H, W)`` plane; 3D ``(Z, H, W)``: ``n_rings`` rings stacked along ``Z``). Each coil's
    sensitivity falls off with distance and carries the phase of its angular position, as in
    sigpy's ``birdcage_maps``. With ``normalize`` the maps satisfy ``sum_c |S_c|^2 = 1``.
    """
    shape = tuple(int(s) for s in shape)
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (Z, H, W), got {shape}")
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / max(n / 2, 1) for n in shape], indexing="ij")
    y, x = grids[-2], grids[-1]
    if len(shape) == 3:
        z = grids[0]
        rings = n_rings or max(1, min(n_coils // 4, 4))
    else:
        z = np.zeros_like(x)
        rings = 1
    per_ring = math.ceil(n_coils / rings)
    maps = np.zeros((n_coils, *shape), dtype=np.complex128)
    for c in range(n_coils):
        ring, k = divmod(c, per_ring)
        theta = 2 * math.pi * k / per_ring + 0.5 * math.pi * ring / rings
        cy, cx = radius * math.sin(theta), radius * math.cos(theta)
        cz = 0.0 if rings == 1 else -1.0 + (2 * ring + 1) / rings
        dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        phase = np.angle((x - cx) + 1j * (y - cy)) + theta
        maps[c] = np.exp(1j * phase) / (dist**2 + 0.1)
    if normalize:
        maps /= rss(maps, dim=0, keepdim=True)
    return torch.from_numpy(maps).to(dtype)


def rss(x: ArrayT, dim: int = 1, keepdim: bool = False) -> ArrayT:
    """Root-sum-of-squares ``sqrt(sum |x|^2)`` over the coil axis ``dim``.

    ``x`` is a torch tensor or a numpy array (the result is of the same kind, real): by default
    ``(B, C, *D) -> (B, *D)``; with ``keepdim`` the axis stays with size 1, ``(B, 1, *D)`` (to
    normalise coil maps to ``sum_c |S_c|^2 = 1``).
    """
    if isinstance(x, torch.Tensor):
        return torch.sqrt((x.abs() ** 2).sum(dim=dim, keepdim=keepdim))
    return np.sqrt((np.abs(x) ** 2).sum(axis=dim, keepdims=keepdim))


def rss_of_kspace(kspace: ArrayT, fft_ndim: int, dim: int = 1) -> ArrayT:
    """Root-sum-of-squares image of multi-coil k-space: centred orthonormal inverse FFT over the
    last ``fft_ndim`` axes, then :func:`rss` over the coil axis ``dim`` (torch or numpy), e.g.
    ``(S, C, *D) -> (S, *D)``."""
    return rss(centred_fft(kspace, tuple(range(-fft_ndim, 0)), inverse=True), dim=dim)
