"""E2E-VarNet (Sriram et al., 2020): k-space cascades with a learned coil-sensitivity model.

Written from the paper and fastMRI's documentation. Each cascade updates the k-space estimate::

    k' = k - eta * M (k - y) + F S (R(x) - x),   x = S^H F^{-1} k

where ``R`` is a U-Net regulariser on the coil-combined image (``R(x) - x`` is the U-Net's output,
fastMRI's "model term"; the sign is learned). The sensitivity model estimates ``S`` from the
fully sampled centre (ACS) of the measured k-space: a U-Net applied to each coil image, then
normalised so that ``sum_c |S_c|^2 = 1``. It runs once per batch, as the network's prologue.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gleam_mri.crop import center_slices
from gleam_mri.fft import exporting, ifftnc
from gleam_mri.models.dc import KspaceDC
from gleam_mri.models.unet import UNet
from gleam_mri.models.unrolled import Iteration, Problem
from gleam_mri.physics.coils import rss
from gleam_mri.physics.espirit import find_calibration_size


class VarNetCascade(Iteration):
    """One E2E-VarNet cascade on a k-space state ``(B, C, *D)``."""

    def __init__(self, regularizer: nn.Module, dc: KspaceDC) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.dc = dc

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        full = problem.op.with_mask(None)
        x = full.adjoint(state)
        model_term = full.forward(self.regularizer(x) - x)
        return self.dc(state, problem.y, problem.mask) + model_term


def acs_mask(mask: torch.Tensor | None, kspace_shape: torch.Size, fft_ndim: int) -> torch.Tensor:
    """0/1 mask of the fully sampled centred block (per batch item), broadcastable to k-space.

    A fully sampled acquisition (``mask is None``) uses the central 8% of each phase-encoding
    axis.
    """
    if exporting():  # an exported 2D graph: one line mask (..., W) for the batch
        return centred_block(mask.reshape(-1, mask.shape[-1])[0])
    batch, dims = kspace_shape[0], tuple(kspace_shape[2:])
    encoded = dims[-fft_ndim:]
    out = torch.zeros(batch, 1, *dims, device=None if mask is None else mask.device)
    for b in range(batch):
        if mask is None:
            sizes = [max(2, round(0.08 * n)) for n in encoded]
            sizes[-2] = encoded[-2]  # the readout is always fully sampled
        else:
            item = mask[b if mask.shape[0] > 1 else 0]
            sizes = list(find_calibration_size(item, fft_ndim, encoded))
        out[(b, slice(None), ..., *center_slices(encoded, sizes, keep_dc=True))] = 1.0
    return out


def centred_block(line: torch.Tensor) -> torch.Tensor:
    """0/1 float ``(N,)``: the largest fully sampled block of the line mask ``line`` ``(N,)`` that
    starts at ``N // 2 - n // 2`` (:func:`find_calibration_size`'s block on one axis), from
    tensor operations alone (no shape depends on the data, so ONNX export maps it). Empty when
    the centre ``N // 2`` is not sampled."""
    n = line.shape[0]
    index = torch.arange(n, device=line.device)
    gaps = line == 0
    # the sampled run from the centre on (with it), and back from it: up to the nearest gap
    right = torch.where(gaps & (index >= n // 2), index, n).amin(0) - n // 2
    left = n // 2 - torch.where(gaps & (index <= n // 2), index, -1).amax(0)
    # the block of size m spans [c - m // 2, c - m // 2 + m): m // 2 < left, m - m // 2 <= right
    odd = 2 * torch.minimum(left - 1, right - 1) + 1
    even = 2 * torch.minimum(left - 1, right)
    size = torch.maximum(odd, even)
    start = n // 2 - torch.div(size, 2, rounding_mode="floor")
    return ((index >= start) & (index < start + size)).to(torch.float32)


class SensitivityModel(nn.Module):
    """Learned coil maps from the ACS region: ``Problem -> Problem`` with maps ``(B, C, *D)``.

    The U-Net runs on every coil image (``B * C`` items). With ``chunk=k`` (and gradients on) it
    runs on ``k`` coil images at a time under non-reentrant ``torch.utils.checkpoint``: only the
    chunks' inputs are kept and one chunk's activations are recomputed at a time in the backward
    pass, so the model's activation memory falls about ``C / k``-fold for one extra forward of
    this (small) network. Results and gradients are the same (instance norm is per item).
    """

    def __init__(self, dims: str, features: int = 8, levels: int = 4, chunk: int | None = None):
        super().__init__()
        if chunk is not None and chunk < 1:
            raise ValueError(f"sensitivity chunk must be >= 1 or None, got {chunk}")
        self.unet = UNet(2, 2, dims=dims, features=features, levels=levels)
        self.chunk = chunk

    def _unet(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunk is None or not torch.is_grad_enabled() or len(x) <= self.chunk:
            return self.unet(x)
        parts = [checkpoint(self.unet, part, use_reentrant=False) for part in x.split(self.chunk)]
        return torch.cat(parts)

    def forward(self, problem: Problem) -> Problem:
        y = problem.y
        with torch.no_grad():
            acs = acs_mask(problem.mask, y.shape, problem.fft_ndim).to(y.device)
        coil_images = ifftnc(y * acs, problem.fft_ndim)  # (B, C, *D)
        b, c = coil_images.shape[:2]
        flat = coil_images.reshape(b * c, *coil_images.shape[2:])
        real = torch.view_as_real(flat).movedim(-1, 1)  # (B*C, 2, *D)
        dims = tuple(range(1, real.ndim))
        mean = real.mean(dim=dims, keepdim=True)
        std = real.std(dim=dims, keepdim=True).clamp_min(1e-6)
        out = self._unet((real - mean) / std) * std + mean
        out = out.float() if out.dtype == torch.bfloat16 else out
        maps = torch.view_as_complex(out.movedim(1, -1).contiguous()).reshape(coil_images.shape)
        norm = rss(maps, dim=1, keepdim=True).clamp_min(1e-6)
        return problem.with_maps((maps / norm).to(y.dtype))
