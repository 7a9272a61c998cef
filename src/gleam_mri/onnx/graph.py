"""The graph ``gleam export`` writes: a trained network with its physics and normalisation.

Inputs and output are real float32 views of complex arrays (a trailing axis of 2: real,
imaginary), at the file's scale, so that an engine in any language feeds the file's arrays as
they are:

- ``kspace`` ``(B, C, *D, 2)``: the measured k-space, zero where not measured;
- ``mask`` ``(1, 1, *M)``: 0/1, broadcastable to ``(B, C, *D)`` (2D: ``(1, 1, 1, W)``, a line
  mask; every network but VarNet also takes a full ``(1, 1, H, W)``);
- ``maps`` ``(B, C, *D, 2)``: the coil maps (VarNet estimates its own, and uses these only for the
  normalisation, as the PyTorch engine does);
- ``image`` ``(B, *D, 2)``: the complex image, uncropped.

Inside, as in :mod:`gleam_mri.data.datasets`: ``scale = max |A^H y|`` per item (``1`` when zero
or not finite), the network runs on ``y / scale`` and its image is multiplied back. MoDL's
conjugate gradient runs its fixed iteration count (:mod:`gleam_mri.linalg`), centred FFTs map to
ONNX's ``DFT`` (:mod:`gleam_mri.fft`), and VarNet's calibration block is found from the line
mask by tensor operations (:func:`~gleam_mri.models.varnet.centred_block`).
"""

from __future__ import annotations

import torch
from torch import nn

from gleam_mri.models.unrolled import Problem

__all__ = ["FORMAT", "INPUTS", "OUTPUTS", "ReconstructionGraph"]

FORMAT = "gleam-mri-onnx/1"  # the model file's "gleam_format" metadata: this layout
INPUTS = ("kspace", "mask", "maps")
OUTPUTS = ("image",)


class ReconstructionGraph(nn.Module):
    """``forward(kspace, mask, maps) -> image`` around a trained unrolled ``net`` (module
    docstring); ``fft_ndim``: the encoded axes (2 in 2D and cine, 3 in 3D)."""

    def __init__(self, net: nn.Module, fft_ndim: int) -> None:
        super().__init__()
        self.net, self.fft_ndim = net, fft_ndim

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        y = torch.view_as_complex(kspace)
        problem = Problem.build(torch.view_as_complex(maps), mask, y, self.fft_ndim)
        peak = problem.x0.abs().flatten(1).amax(dim=1)
        usable = torch.isfinite(peak) & (peak > 0)
        scale = torch.where(usable, peak, torch.ones_like(peak)).view(-1, *[1] * (y.ndim - 1))
        image = self.net(Problem(problem.op, y / scale, problem.x0 / scale[:, 0]))
        return torch.view_as_real(image * scale[:, 0])
