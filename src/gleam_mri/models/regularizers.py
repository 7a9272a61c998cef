"""CNN regularisers for unrolled reconstruction: complex image in, denoised complex image out.

A regulariser ``R`` maps a complex image ``x`` ``(B, *D)`` to a denoised image of the same shape
and dtype (``dims`` as in :mod:`gleam_mri.models.unet`: ``"2d"``, ``"3d"`` or ``"2d+t"``). It
returns the *image*, not the residual, by residual learning::

    x2 = [Re x, Im x]                          (B, 2, *D)  real
    mean, std = per-sample, per-channel statistics of x2 over D
    R(x) = x + std * net((x2 - mean) / std)    back to complex

This is fastMRI VarNet's ``norm``/``unnorm`` around the CNN with the skip taken in image units.
Because the CNN only sees normalised input, ``R(c x) = c R(x)`` for every real ``c > 0`` (up to
round-off). Each channel's std is clamped from below to ``1e-3`` times the larger of the two
(and to ``1e-12``), so a (nearly) zero imaginary part is not blown up to unit variance and a
constant image does not divide by zero; the clamp scales with ``x`` and keeps the equivariance.

The CNN's last convolution is initialised at ``out_scale`` times its default, so ``R`` starts
close to the identity (exactly, for ``out_scale=0``, though then only that layer receives a
gradient on the first step); this keeps deep unrolled networks stable at initialisation.

Under ``torch.autocast`` the convolutions run in the low precision; the normalisation, the skip
and the complex conversion stay in the input's precision, so the output dtype is the input's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gleam_mri.models.unet import (
    UNet,
    dims_spec,
    fold_batch,
    make_conv,
    scale_output_init_,
    unfold_batch,
)

_REL_STD_FLOOR = 1e-3
_ABS_STD_FLOOR = 1e-12


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, *D)`` -> real ``(B, 2, *D)`` with channels [real, imag]."""
    if not x.is_complex():
        raise TypeError(f"expected a complex image (B, *D), got dtype {x.dtype}")
    return torch.stack((x.real, x.imag), dim=1)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, *D)`` -> complex ``(B, *D)`` (float32 -> complex64, float64 -> complex128)."""
    if x.ndim < 2 or x.shape[1] != 2:
        raise ValueError(f"expected real channels (B, 2, *D), got shape {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1])


def normalize_channels(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel standardisation of real ``(B, C, *D)``.

    Returns ``(x - mean) / std``, ``mean`` and ``std`` (both ``(B, C, 1, ..., 1)``); the
    population std is clamped from below as the module docstring describes.
    """
    flat = x.flatten(2)
    mean = flat.mean(dim=2, keepdim=True)
    std = flat.std(dim=2, correction=0, keepdim=True)
    floor = (_REL_STD_FLOOR * std.amax(dim=1, keepdim=True)).clamp_min(_ABS_STD_FLOOR)
    std = torch.maximum(std, floor)
    stat_shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    return ((flat - mean) / std).view_as(x), mean.view(stat_shape), std.view(stat_shape)


class ComplexResidual(nn.Module):
    """``R(x) = x + std * net(norm(x))`` around a real CNN ``net``: ``(N, 2, *D)`` -> same.

    Input and output: complex ``(B, *D)`` with at least the ``dims``' convolution axes.
    """

    def __init__(self, net: nn.Module, dims: str) -> None:
        super().__init__()
        self.net = net
        self.dims = dims
        self._conv_ndim = dims_spec(dims).conv_ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised complex image ``(B, *D)``, same dtype as ``x``."""
        if not x.is_complex():
            raise TypeError(f"regulariser expects a complex image (B, *D), got dtype {x.dtype}")
        if x.ndim < 1 + self._conv_ndim:
            raise ValueError(
                f"dims={self.dims!r} needs an image (B, *D) with at least {self._conv_ndim} "
                f"image axes, got shape {tuple(x.shape)}"
            )
        x2 = complex_to_channels(x)
        xn, _, std = normalize_channels(x2)
        weight_dtype = next(self.net.parameters()).dtype
        residual = self.net(xn.to(weight_dtype)).to(x2.dtype)
        return channels_to_complex(x2 + std * residual)


class _ResBlock(nn.Module):
    """``h + conv(relu(conv(h)))``."""

    def __init__(self, dims: str, features: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = make_conv(dims, features, features, kernel_size)
        self.act = nn.ReLU()
        self.conv2 = make_conv(dims, features, features, kernel_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(self.act(self.conv1(h)))


class ResNet(nn.Module):
    """Real residual CNN ``(N, in_ch, *D)`` -> ``(N, out_ch, *D)``, leading ``D`` axes folded.

    conv in -> ``blocks`` residual blocks (conv-ReLU-conv + skip) -> conv out, all with
    ``features`` channels and "same" padding; ``out_scale`` scales the conv out's initialisation.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        dims: str = "2d",
        features: int = 64,
        blocks: int = 5,
        kernel_size: int = 3,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self._conv_ndim = dims_spec(dims).conv_ndim
        if features < 1 or blocks < 0:
            raise ValueError(f"need features >= 1 and blocks >= 0, got {features}, {blocks}")
        self.conv_in = make_conv(dims, in_ch, features, kernel_size)
        self.blocks = nn.Sequential(
            *[_ResBlock(dims, features, kernel_size) for _ in range(blocks)]
        )
        self.conv_out = make_conv(dims, features, out_ch, kernel_size)
        scale_output_init_(self.conv_out, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_ch, *D)`` real -> ``(N, out_ch, *D)``."""
        h, lead = fold_batch(x, self._conv_ndim)
        return unfold_batch(self.conv_out(self.blocks(self.conv_in(h))), lead)


class ResNetRegularizer(ComplexResidual):
    """Residual ResNet denoiser (PGD in GLEAM): complex ``(B, *D)`` -> denoised image, same shape.

    ``features`` channels, ``blocks`` residual blocks; see the module docstring for the
    normalisation and ``out_scale`` (near-identity start).
    """

    def __init__(
        self,
        dims: str = "2d",
        features: int = 64,
        blocks: int = 5,
        kernel_size: int = 3,
        out_scale: float = 1e-2,
    ) -> None:
        super().__init__(ResNet(2, 2, dims, features, blocks, kernel_size, out_scale), dims)


class UNetRegularizer(ComplexResidual):
    """Residual U-Net denoiser: complex ``(B, *D)`` -> denoised image, same shape.

    Built on :class:`gleam_mri.models.unet.UNet` with 2 input and output channels.
    """

    def __init__(
        self,
        dims: str = "2d",
        features: int = 32,
        levels: int = 3,
        kernel_size: int = 3,
        instance_norm: bool = True,
        out_scale: float = 1e-2,
    ) -> None:
        net = UNet(2, 2, dims, features, levels, kernel_size, instance_norm, out_scale)
        super().__init__(net, dims)


REGULARIZERS: dict[str, type[ComplexResidual]] = {
    "resnet": ResNetRegularizer,
    "unet": UNetRegularizer,
}


def build_regularizer(name: str, dims: str, **kwargs: Any) -> nn.Module:
    """Regulariser ``name`` (``"resnet"`` or ``"unet"``) for ``dims``, with keyword options."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; valid: {', '.join(REGULARIZERS)}")
    dims_spec(dims)
    return REGULARIZERS[name](dims=dims, **kwargs)
