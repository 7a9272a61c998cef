"""Real anatomy for simulation: 2D slices and 3D slabs from a NIfTI magnitude volume.

:func:`load_magnitude_volume` returns the volume in the closest canonical (RAS+) orientation:
axis 0 runs left to right, axis 1 posterior to anterior, axis 2 inferior to superior. Slices and
slabs are taken along ``axis`` (default 2: axial) and rotated by 90 degrees in plane, so that
anterior (axial) or superior (sagittal, coronal) is at the top of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

# A voxel is foreground above this fraction of the normalised range.
_FOREGROUND = 0.1
# Slices whose foreground area is below this fraction of the largest are skipped.
_MIN_AREA = 0.5


def load_magnitude_volume(path: str | Path) -> np.ndarray:
    """Read a 3D NIfTI magnitude volume as float32 ``(X, Y, Z)`` in ``[0, 1]`` (RAS+ order).

    The 99.9th percentile of the non-zero voxels maps to 1 (values above are clipped), negative
    values clip to 0 and non-finite values become 0. Trailing axes of size 1 are dropped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable NIfTI image, is not 3D, or is all zero.
    """
    import nibabel as nib  # deferred: only reading a NIfTI needs it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        img = nib.load(path)
    except Exception as err:
        raise ValueError(f"cannot read {path} as a NIfTI volume: {err}") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{path} is a {type(img).__name__}, not a NIfTI image")
    shape = tuple(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"{path} holds a {len(shape)}D image of shape {img.shape}; need 3D")
    try:
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    except Exception as err:
        raise ValueError(f"cannot read the voxels of {path}: {err}") from err
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    data = np.clip(data, 0.0, None)
    nonzero = data[data > 0]
    if nonzero.size == 0:
        raise ValueError(f"{path} is all zero (no positive voxels)")
    scale = float(np.quantile(nonzero, 0.999))
    return np.clip(data / scale, 0.0, 1.0).astype(np.float32)


def _check_volume(volume: object, axis: int) -> int:
    if not isinstance(volume, np.ndarray) or volume.ndim != 3:
        shape = getattr(volume, "shape", None)
        raise ValueError(f"volume must be a 3D numpy array, got shape {shape}")
    if not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2 (or negative), got {axis!r}")
    return int(axis) % 3


def _check_request(n: object, shape: Sequence[int], ndim: int, rng: object) -> tuple[int, ...]:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    shape = tuple(shape)
    if len(shape) != ndim or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"shape must be {ndim} positive ints, got {shape!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return tuple(int(s) for s in shape)


def _oriented(volume: np.ndarray, axis: int) -> np.ndarray:
    """``(A, H, W)``: slicing axis first, then each slice rotated by 90 degrees, cropped to the
    in-plane bounding box of the foreground (so the object fills the requested field of view)."""
    stack = np.rot90(np.moveaxis(volume, axis, 0), k=1, axes=(1, 2))
    fg = stack > _FOREGROUND
    rows, cols = np.flatnonzero(fg.any(axis=(0, 2))), np.flatnonzero(fg.any(axis=(0, 1)))
    if rows.size == 0:
        raise ValueError("volume has no foreground (all voxels below 0.1)")
    margin = 2
    r0, r1 = max(rows[0] - margin, 0), rows[-1] + margin + 1
    c0, c1 = max(cols[0] - margin, 0), cols[-1] + margin + 1
    return stack[:, r0:r1, c0:c1]


def _central_slices(stack: np.ndarray) -> np.ndarray:
    """Indices along axis 0 whose foreground area is at least half of the largest one."""
    area = (stack > _FOREGROUND).sum(axis=(1, 2))
    return np.flatnonzero(area >= _MIN_AREA * area.max())


def _zoom(array: np.ndarray, factor: float) -> np.ndarray:
    """Isotropic linear resampling of every axis by ``factor`` (pixel-area aligned)."""
    return ndimage.zoom(array.astype(np.float32), factor, order=1, grid_mode=True, mode="nearest")


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop or zero-pad every axis of ``array`` to ``shape``."""
    out = np.zeros(shape, dtype=np.float32)
    src, dst = [], []
    for n_in, n_out in zip(array.shape, shape, strict=True):
        size = min(n_in, n_out)
        start_in, start_out = (n_in - size) // 2, (n_out - size) // 2
        src.append(slice(start_in, start_in + size))
        dst.append(slice(start_out, start_out + size))
    out[tuple(dst)] = array[tuple(src)]
    return out


def anatomy_slices(
    volume: np.ndarray,
    n: int,
    shape: tuple[int, int],
    rng: np.random.Generator,
    axis: int = 2,
) -> np.ndarray:
    """``n`` random slices from the central part of the object, float32 ``(n, H, W)`` in [0, 1].

    Slices are drawn (without replacement when there are enough) among those whose foreground
    area is at least half the largest, returned in increasing position, isotropically resampled
    (``scipy.ndimage.zoom``, order 1) so the object's in-plane extent fits ``(H, W)``, and
    centre-padded or cropped to ``(H, W)``.
    """
    axis = _check_volume(volume, axis)
    out_shape = _check_request(n, shape, 2, rng)
    stack = _oriented(volume, axis)
    candidates = _central_slices(stack)
    picks = np.sort(rng.choice(candidates, size=n, replace=n > candidates.size))
    zoom = min(out_shape[0] / stack.shape[1], out_shape[1] / stack.shape[2])
    out = np.empty((n, *out_shape), dtype=np.float32)
    for i, index in enumerate(picks):
        resized = _zoom(stack[index], zoom)
        out[i] = _fit(np.clip(resized, 0.0, 1.0), out_shape)
    return out


def anatomy_slabs(
    volume: np.ndarray,
    n: int,
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    axis: int = 2,
) -> np.ndarray:
    """``n`` random slabs of ``Z`` consecutive slices, float32 ``(n, Z, H, W)`` in ``[0, 1]``.

    The volume is isotropically resampled with the in-plane factor of :func:`anatomy_slices`
    (the object fills ``(H, W)``), and each slab's centre is drawn among the central slices
    along ``axis``, the slab then shifted to lie inside the volume (zero-padded only when the
    volume is thinner than the slab).
    """
    axis = _check_volume(volume, axis)
    out_shape = _check_request(n, shape, 3, rng)
    stack = _oriented(volume, axis)
    zoom = min(out_shape[1] / stack.shape[1], out_shape[2] / stack.shape[2])
    depth = int(np.ceil(out_shape[0] / zoom)) + 2  # source slices needed, with a margin
    centres = rng.choice(_central_slices(stack), size=n)
    out = np.empty((n, *out_shape), dtype=np.float32)
    for i, centre in enumerate(centres):
        if stack.shape[0] >= depth:
            start = min(max(int(centre) - depth // 2, 0), stack.shape[0] - depth)
        else:  # centre the whole (too thin) volume in the slab
            start = (stack.shape[0] - depth) // 2
        lo, hi = max(start, 0), min(start + depth, stack.shape[0])
        block = np.zeros((depth, *stack.shape[1:]), dtype=np.float32)
        block[lo - start : hi - start] = stack[lo:hi]
        resized = _zoom(block, zoom)
        out[i] = _fit(np.clip(resized, 0.0, 1.0), out_shape)
    return out
