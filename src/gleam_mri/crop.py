"""Centre crops of torch tensors and numpy arrays, in the project's two window conventions.

A centred window of ``n`` samples out of ``N`` starts at

- ``(N - n) // 2``: fastMRI's image crop (e.g. a 640 x 368 image to its 320 x 320 target);
- ``N // 2 - n // 2`` with ``keep_dc=True``: the centred-FFT DC index ``N // 2`` (see
  :mod:`gleam_mri.fft`) lands on the window's own DC index ``n // 2`` (k-space calibration
  regions, the recon field of view of readout-oversampled raw data).

The two differ, by one sample, only for an even ``N`` and an odd ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def center_slices(
    shape: Sequence[int], size: Sequence[int], keep_dc: bool = False
) -> tuple[slice, ...]:
    """One slice per axis: the centred window of ``size`` in ``shape`` (module docstring)."""
    starts = [
        n // 2 - s // 2 if keep_dc else (n - s) // 2 for n, s in zip(shape, size, strict=True)
    ]
    return tuple(slice(start, start + s) for start, s in zip(starts, size, strict=True))


def center_crop(
    x: ArrayT,
    size: Sequence[int],
    axes: Sequence[int] | None = None,
    keep_dc: bool = False,
) -> ArrayT:
    """Centre-crop ``axes`` of ``x`` to ``size`` (a view; default: the last ``len(size)`` axes).

    ``x`` is a torch tensor or numpy array ``(..., *N)``; e.g. ``size = (h, w)`` crops an image
    ``(..., H, W)`` to ``(..., h, w)``. The window starts at ``(N - n) // 2`` (fastMRI), or at
    ``N // 2 - n // 2`` with ``keep_dc`` (module docstring). Raises ``ValueError`` when ``x`` is
    smaller than ``size`` on one of the axes.
    """
    size = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in size)  # symbolic: export
    axes = tuple(range(-len(size), 0)) if axes is None else tuple(axes)
    if len(axes) != len(size):
        raise ValueError(f"crop size {size} and axes {axes} differ in length")
    shape = tuple(x.shape)
    full = [shape[axis] for axis in axes]
    if any(n < s for n, s in zip(full, size, strict=True)):
        raise ValueError(f"cannot crop an image of shape {shape} to {size}")
    index = [slice(None)] * len(shape)
    for axis, window in zip(axes, center_slices(full, size, keep_dc), strict=True):
        index[axis] = window
    return x[tuple(index)]
