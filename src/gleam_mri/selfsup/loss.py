"""The self-supervised loss: the network's image against held-out measured k-space.

SSDU's normalised l1-l2 loss (Yaman et al., MRM 2020), per batch item, averaged over the batch::

    e = Lambda F S x - y_Lambda
    loss = ||e||_2 / ||y_Lambda||_2 + ||e||_1 / ||y_Lambda||_1

with ``Lambda`` the held-out locations (``batch.loss_mask``), ``y_Lambda`` the measured samples
there (``batch.loss_kspace``), ``S`` the batch's coil maps and ``F`` the centred orthonormal FFT.
It is zero exactly when the image reproduces every held-out sample, needs no target, and is a
:data:`~gleam_mri.training.losses.LossFn`, so every strategy (greedy modules included) trains on it
unchanged.
"""

from __future__ import annotations

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.physics.operators import SenseOp


def heldout_residual(image: torch.Tensor, batch: MRIBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Lambda A x - y_Lambda, y_Lambda)``, both ``(B, C, *D)``, for image ``x`` ``(B, *D)``.

    Raises ``ValueError`` when the batch holds out no k-space (not a self-supervised batch).
    """
    if batch.loss_kspace is None or batch.loss_mask is None:
        raise ValueError(
            "the batch holds out no k-space: the self-supervised loss needs batches split by "
            "gleam_mri.selfsup (train.supervision: self)"
        )
    maps = batch.maps.to(image.dtype if image.dtype == torch.complex128 else torch.complex64)
    op = SenseOp(maps, batch.loss_mask.to(maps.real.dtype), batch.fft_ndim)
    reference = batch.loss_kspace.to(maps.dtype)
    return op.forward(image.to(maps.dtype)) - reference, reference


class KspaceLoss:
    """A :data:`LossFn` on held-out k-space: SSDU's normalised l1 + l2 (module docstring)."""

    name = "kspace"

    def __call__(self, image: torch.Tensor, batch: MRIBatch) -> torch.Tensor:
        """Scalar loss, float32 (float64 for a complex128 image)."""
        if not torch.is_complex(image):
            raise TypeError(f"the loss expects a complex image (B, *D), got {image.dtype}")
        with torch.autocast(device_type=image.device.type, enabled=False):
            error, reference = heldout_residual(image, batch)
            error, reference = error.flatten(1), reference.flatten(1)
            tiny = torch.finfo(error.real.dtype).tiny
            l2 = error.norm(dim=1) / reference.norm(dim=1).clamp_min(tiny)
            l1 = error.abs().sum(dim=1) / reference.abs().sum(dim=1).clamp_min(tiny)
            return (l2 + l1).mean()

    def __repr__(self) -> str:
        return "KspaceLoss()"
