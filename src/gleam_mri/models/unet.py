"""Dimension-generic convolutions and a real-valued U-Net for 2D, 3D and 2D+t images.

Networks here take a real tensor ``(N, C, *D)``; ``dims`` says which trailing axes of ``D`` the
convolutions see:

- ``"2d"``: ``Conv2d`` over the last two axes ``(H, W)``.
- ``"3d"``: ``Conv3d`` over ``(Z, H, W)``. The U-Net pools all three axes.
- ``"2d+t"``: spatio-temporal, for cine ``D=(T, H, W)``. Every k×k convolution is a (2+1)D
  factorised pair: a spatial ``Conv3d`` with kernel ``(1, k, k)`` followed by a temporal
  ``Conv3d`` with kernel ``(k, 1, 1)``, with no nonlinearity between them, so the pair replaces
  one convolution (12 instead of 27 weights per channel pair for k=3). The U-Net pools only
  ``(H, W)``: cine has few frames, and padding time to a multiple of ``2**levels`` would invent
  frames.

Axes of ``D`` in front of those the convolution sees (slices or frames under ``"2d"``) are folded
into the batch, so each 2D (or 3D) image is processed independently. All convolutions use zero
"same" padding with odd kernels, so any image size works; the U-Net pads each pooled axis to a
multiple of ``2**levels`` inside and crops back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gleam_mri.crop import center_crop


@dataclass(frozen=True)
class DimsSpec:
    """How a ``dims`` name maps to convolutions: their rank and the U-Net's per-axis pooling."""

    conv_ndim: int
    pool: tuple[int, ...]


DIMS: dict[str, DimsSpec] = {
    "2d": DimsSpec(conv_ndim=2, pool=(2, 2)),
    "3d": DimsSpec(conv_ndim=3, pool=(2, 2, 2)),
    "2d+t": DimsSpec(conv_ndim=3, pool=(1, 2, 2)),
}

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def dims_spec(dims: str) -> DimsSpec:
    """The :class:`DimsSpec` of ``dims``; ``ValueError`` naming the valid ones otherwise."""
    if dims not in DIMS:
        raise ValueError(f"unknown dims {dims!r}; valid: {', '.join(DIMS)}")
    return DIMS[dims]


def make_conv(
    dims: str, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True
) -> nn.Module:
    """A stride-1 "same" convolution for ``dims`` mapping ``(N, in_ch, *S)`` to ``(N, out_ch, *S)``.

    ``"2d+t"`` with ``kernel_size > 1`` gives the factorised (spatial then temporal) pair as an
    ``nn.Sequential``; the bias, if any, sits on its temporal convolution.
    """
    spec = dims_spec(dims)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if in_ch < 1 or out_ch < 1:
        raise ValueError(f"channel counts must be >= 1, got in_ch={in_ch}, out_ch={out_ch}")
    k, p = kernel_size, kernel_size // 2
    if dims == "2d+t" and k > 1:
        return nn.Sequential(
            nn.Conv3d(in_ch, out_ch, (1, k, k), padding=(0, p, p), bias=False),
            nn.Conv3d(out_ch, out_ch, (k, 1, 1), padding=(p, 0, 0), bias=bias),
        )
    return _CONV[spec.conv_ndim](in_ch, out_ch, k, padding=p, bias=bias)


def scale_output_init_(conv: nn.Module, scale: float) -> None:
    """Scale the weights of the last convolution in ``conv`` by ``scale`` and zero its bias.

    Its output then starts at ``scale`` times a default-initialised one (zero for ``scale=0``).
    """
    last = [m for m in conv.modules() if isinstance(m, nn.modules.conv._ConvNd)][-1]
    with torch.no_grad():
        last.weight.mul_(scale)
        if last.bias is not None:
            last.bias.zero_()


def fold_batch(x: torch.Tensor, conv_ndim: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``(N, C, *L, *S)`` -> ``(N * prod(L), C, *S)`` with ``len(S) = conv_ndim``.

    Returns the folded tensor and the leading shape ``(N, *L)`` for :func:`unfold_batch`.
    """
    if x.ndim < 2 + conv_ndim:
        raise ValueError(
            f"expected a tensor (N, C, *D) with at least {conv_ndim} image axes, "
            f"got shape {tuple(x.shape)}"
        )
    lead = (x.shape[0], *x.shape[2 : x.ndim - conv_ndim])
    x = x.movedim(1, -conv_ndim - 1)
    return x.reshape(-1, *x.shape[-conv_ndim - 1 :]), lead


def unfold_batch(y: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`fold_batch`: ``(N * prod(L), C, *S)`` -> ``(N, C, *L, *S)``."""
    return y.reshape(*lead, *y.shape[1:]).movedim(len(lead), 1)


class _DoubleConv(nn.Sequential):
    """(conv -> [InstanceNorm] -> LeakyReLU) twice."""

    def __init__(
        self, dims: str, in_ch: int, out_ch: int, kernel_size: int, instance_norm: bool
    ) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            # a bias before an affine-free InstanceNorm is removed by it: leave it out
            layers.append(make_conv(dims, c_in, out_ch, kernel_size, bias=not instance_norm))
            if instance_norm:
                layers.append(_INSTANCE_NORM[dims_spec(dims).conv_ndim](out_ch))
            layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class _Up(nn.Sequential):
    """Transposed convolution undoing one pooling step, halving the channels."""

    def __init__(self, dims: str, in_ch: int, out_ch: int, instance_norm: bool) -> None:
        spec = dims_spec(dims)
        conv_t = _CONV_T[spec.conv_ndim]
        layers: list[nn.Module] = [
            conv_t(in_ch, out_ch, spec.pool, stride=spec.pool, bias=not instance_norm)
        ]
        if instance_norm:
            layers.append(_INSTANCE_NORM[spec.conv_ndim](out_ch))
        layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class UNet(nn.Module):
    """Real-valued U-Net: ``(N, in_ch, *D)`` -> ``(N, out_ch, *D)``, floating point.

    ``levels`` average-poolings (per-axis factors from ``dims``, see the module docstring); level
    ``l`` has ``features * 2**l`` channels and two conv -> [InstanceNorm] -> LeakyReLU(0.2)
    layers; the decoder upsamples with transposed convolutions and concatenates the skip; a 1×1
    convolution gives ``out_ch`` channels. Pooled axes are zero-padded symmetrically to a multiple
    of ``2**levels`` (and so that the bottleneck has at least 2 elements) and cropped back, so any
    size works. ``out_scale`` scales the default initialisation of the final convolution.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        dims: str = "2d",
        features: int = 32,
        levels: int = 3,
        kernel_size: int = 3,
        instance_norm: bool = True,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        spec = dims_spec(dims)
        if features < 1 or levels < 0:
            raise ValueError(f"need features >= 1 and levels >= 0, got {features}, {levels}")
        self.in_ch, self.out_ch, self.dims, self.levels = in_ch, out_ch, dims, levels
        self._spec = spec
        chans = [features * 2**level for level in range(levels + 1)]
        self.down = nn.ModuleList(
            [_DoubleConv(dims, in_ch, chans[0], kernel_size, instance_norm)]
            + [
                _DoubleConv(dims, chans[i - 1], chans[i], kernel_size, instance_norm)
                for i in range(1, levels + 1)
            ]
        )
        self.pool = _POOL[spec.conv_ndim](spec.pool, stride=spec.pool)
        self.up = nn.ModuleList(
            [_Up(dims, chans[i], chans[i - 1], instance_norm) for i in range(levels, 0, -1)]
        )
        self.up_conv = nn.ModuleList(
            [
                _DoubleConv(dims, 2 * chans[i - 1], chans[i - 1], kernel_size, instance_norm)
                for i in range(levels, 0, -1)
            ]
        )
        self.out = make_conv(dims, chans[0], out_ch, kernel_size=1)
        scale_output_init_(self.out, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_ch, *D)`` real -> ``(N, out_ch, *D)``; leading axes of ``D`` are folded."""
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"UNet expects a real floating-point tensor, got {x.dtype}")
        if x.ndim < 2 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected (N, {self.in_ch}, *D), got shape {tuple(x.shape)}")
        x, lead = fold_batch(x, self._spec.conv_ndim)
        size = x.shape[2:]
        h = F.pad(x, self._padding(size))
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                skips.append(h)
                h = self.pool(h)
            h = block(h)
        for up, block in zip(self.up, self.up_conv, strict=True):
            h = block(torch.cat([up(h), skips.pop()], dim=1))
        h = self.out(h)
        return unfold_batch(center_crop(h, size), lead)

    def _padding(self, size: torch.Size) -> list[int]:
        """``F.pad`` amounts (last axis first) making each pooled axis divisible by its factor."""
        factors = [f**self.levels for f in self._spec.pool]
        padded = [(n + f - 1) // f * f for n, f in zip(size, factors, strict=True)]  # exportable
        if math.prod(p // f for p, f in zip(padded, factors, strict=True)) < 2:
            padded[-1] += factors[-1]  # InstanceNorm needs >= 2 elements at the bottleneck
        pads: list[int] = []
        for n, p in reversed(list(zip(size, padded, strict=True))):
            pads += [(p - n) // 2, p - n - (p - n) // 2]
        return pads
