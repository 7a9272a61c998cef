"""Training losses: reconstructed complex image against the batch's magnitude target.

A :data:`LossFn` takes the network's complex image ``(B, *D)`` and the :class:`MRIBatch`; it
centre-crops the image to the target (``batch.crop_to_target``), takes the magnitude and compares
it with ``batch.target`` (float ``(B, *Dt)``). The loss is computed outside autocast, in float32
(float64 when the image or target is double precision, as in gradient tests), and returned as a
scalar tensor.

Names (:func:`build_loss`):

- ``"l1"``: mean absolute error.
- ``"mse"``: mean squared error.
- ``"ssim"``: ``1 - SSIM`` (:class:`gleam_mri.metrics.SSIMLoss`, fastMRI's SSIM, 7x7 window,
  data range = each item's target maximum; leading axes of ``D`` are folded into 2D slices).
- ``"l1+ssim"``: ``w * (1 - SSIM) + (1 - w) * L1`` with ``w = 0.84`` (Zhao et al., "Loss
  functions for image restoration with neural networks", IEEE TCI 2017). Targets are normalised
  (zero-filled maximum 1), so both terms are of order 0.1-1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gleam_mri.data.batch import MRIBatch
from gleam_mri.loss_names import LOSS_NAMES
from gleam_mri.metrics import SSIMLoss
from gleam_mri.selfsup.loss import KspaceLoss

LossFn = Callable[[torch.Tensor, MRIBatch], torch.Tensor]

SSIM_WEIGHT = 0.84


def magnitude_pair(image: torch.Tensor, batch: MRIBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(|crop(image)|, target)`` as real tensors ``(B, *Dt)`` of one dtype (float32 or float64).

    Raises ``ValueError`` when the batch has no target or the shapes disagree, ``TypeError`` when
    the image is not complex.
    """
    if not torch.is_complex(image):
        raise TypeError(f"the loss expects a complex image (B, *D), got {image.dtype}")
    if batch.target is None:
        raise ValueError("the batch has no target: a training loss needs one")
    pred = batch.crop_to_target(image).abs()
    target = batch.target.to(pred.device)
    if pred.shape != target.shape:
        raise ValueError(
            f"cropped image {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    double = torch.float64 in (pred.dtype, target.dtype)
    dtype = torch.float64 if double else torch.float32
    return pred.to(dtype), target.to(dtype)


class ImageLoss:
    """A :data:`LossFn` comparing ``|crop(image)|`` with ``batch.target`` (see module docstring)."""

    def __init__(self, name: str, ssim_weight: float = SSIM_WEIGHT) -> None:
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {name!r}; choose one of {LOSS_NAMES}")
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must lie in [0, 1], got {ssim_weight}")
        self.name = name
        self.ssim_weight = float(ssim_weight)
        self._ssim = SSIMLoss()

    def __call__(self, image: torch.Tensor, batch: MRIBatch) -> torch.Tensor:
        """Scalar loss (float32, or float64 for double-precision inputs)."""
        with torch.autocast(device_type=image.device.type, enabled=False):
            pred, target = magnitude_pair(image, batch)
            if self.name == "l1":
                return F.l1_loss(pred, target)
            if self.name == "mse":
                return F.mse_loss(pred, target)
            ssim = self._ssim(pred, target)
            if self.name == "ssim":
                return ssim
            w = self.ssim_weight
            return w * ssim + (1.0 - w) * F.l1_loss(pred, target)

    def __repr__(self) -> str:
        extra = f", ssim_weight={self.ssim_weight}" if self.name == "l1+ssim" else ""
        return f"ImageLoss({self.name!r}{extra})"


def training_loss(name: str, supervision: str = "target") -> LossFn:
    """The training loss: :func:`build_loss` ``(name)`` against the target, or with
    ``supervision="self"`` the k-space loss on held-out samples (:mod:`gleam_mri.selfsup`)."""
    if supervision == "self":
        return KspaceLoss()
    if supervision != "target":
        raise ValueError(f"supervision must be 'target' or 'self', got {supervision!r}")
    return build_loss(name)


def build_loss(name: str) -> LossFn:
    """The loss called ``name``: one of ``"l1"``, ``"mse"``, ``"ssim"``, ``"l1+ssim"``."""
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__}")
    return ImageLoss(name.strip().lower())
