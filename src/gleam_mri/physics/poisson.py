"""Variable-density Poisson-disc sampling of the (Z, W) phase-encoding plane of 3D k-space.

The sampler is discrete dart throwing on the grid: the grid points are visited once in random
order (calibration points first, always kept) and a point is kept unless it lies closer than the
radius of an earlier kept point, which blocks a disc around itself. Visiting every point makes
the pattern maximal. The radius is ``r0 * (1 + VD_STRENGTH * d)`` with ``d`` the elliptical
distance from the k-space centre (0 at the centre, 1 at the middle of each edge), or ``r0``
without variable density. ``r0`` is tuned by bisection, on a fixed visiting order, until the
sample count is at most ``tol`` above the target ``round(Z * W / R)``; the few surplus points are
then dropped at random (dropping points keeps every pairwise distance), so the achieved
acceleration matches the request up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "VD_STRENGTH",
    "PoissonDiscMask",
    "center_slice",
    "check_acceleration",
    "poisson_disc_pattern",
]

VD_STRENGTH = 1.0
"""Radius growth from centre to edge: density at the edge is ``1 / (1 + VD_STRENGTH)^2`` of
the centre's."""

_QUANT = 16  # radii are quantised to 1/_QUANT of a grid step to reuse the disc stencils


def check_acceleration(acceleration: float) -> None:
    """Raise ``TypeError`` unless a real number, ``ValueError`` unless finite and > 1."""
    if isinstance(acceleration, bool) or not isinstance(
        acceleration, int | float | np.integer | np.floating
    ):
        raise TypeError(f"acceleration must be a number, got {type(acceleration).__name__}")
    if not math.isfinite(acceleration) or acceleration <= 1:
        raise ValueError(f"acceleration must be a finite number > 1, got {acceleration}")


def center_slice(n: int, num_center: int) -> slice:
    """The ``num_center`` central indices of an axis of length ``n`` (fastMRI's placement)."""
    start = (n - num_center + 1) // 2
    return slice(start, start + num_center)


def _stencil(key: int, cache: dict[int, tuple[int, np.ndarray]]) -> tuple[int, np.ndarray]:
    """Half width ``h`` and boolean disc ``(2h+1, 2h+1)`` of offsets closer than ``key/_QUANT``."""
    if key not in cache:
        radius = key / _QUANT
        half = max(math.ceil(radius) - 1, 0)
        offsets = np.arange(-half, half + 1)
        dist2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
        cache[key] = (half, dist2 < radius**2)
    return cache[key]


def _dart_throw(
    radius_keys: list[int], order: list[int], forced: list[int], shape: tuple[int, int]
) -> np.ndarray:
    """One maximal dart-throwing pass -> boolean pattern ``shape``."""
    rows, cols = shape
    blocked = np.zeros(shape, dtype=bool)
    flat_blocked = blocked.reshape(-1)
    kept = np.zeros(rows * cols, dtype=bool)
    cache: dict[int, tuple[int, np.ndarray]] = {}
    num_forced = len(forced)
    for position, index in enumerate(forced + order):
        if position >= num_forced and flat_blocked[index]:
            continue
        kept[index] = True
        half, disc = _stencil(radius_keys[index], cache)
        row, col = divmod(index, cols)
        r0, c0 = row - half, col - half
        r_lo, r_hi = max(r0, 0), min(row + half + 1, rows)
        c_lo, c_hi = max(c0, 0), min(col + half + 1, cols)
        blocked[r_lo:r_hi, c_lo:c_hi] |= disc[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
    return kept.reshape(shape)


def poisson_disc_pattern(
    shape: tuple[int, int],
    acceleration: float,
    calib: tuple[int, int] = (0, 0),
    rng: np.random.Generator | None = None,
    variable_density: bool = True,
    tol: float = 0.02,
    max_iter: int = 30,
) -> np.ndarray:
    """Poisson-disc pattern over a ``(Z, W)`` grid with a fully sampled centred calibration block.

    Args:
        shape: grid size ``(Z, W)``.
        acceleration: target ``Z * W / samples``, > 1.
        calib: calibration block ``(cz, cw)``, centred like fastMRI's centre lines.
        rng: random generator (a fresh unseeded one if ``None``).
        variable_density: grow the exclusion radius with the distance from the centre.
        tol: relative surplus of samples accepted by the bisection before trimming.
        max_iter: bisection steps.

    Returns:
        Boolean array ``(Z, W)`` with ``round(Z * W / acceleration)`` true entries.
    """
    check_acceleration(acceleration)
    rows, cols = (int(n) for n in shape)
    cz, cw = (int(n) for n in calib)
    if rows < 1 or cols < 1:
        raise ValueError(f"grid shape must be positive, got {tuple(shape)}")
    if not (0 <= cz <= rows and 0 <= cw <= cols):
        raise ValueError(f"calibration region {(cz, cw)} does not fit the {rows}x{cols} grid")
    rng = np.random.default_rng() if rng is None else rng
    target = round(rows * cols / acceleration)
    if target < 1:
        raise ValueError(f"acceleration {acceleration} leaves no sample on a {rows}x{cols} grid")
    calib_mask = np.zeros((rows, cols), dtype=bool)
    calib_mask[center_slice(rows, cz), center_slice(cols, cw)] = True
    if calib_mask.sum() > target:
        raise ValueError(
            f"calibration region {(cz, cw)} holds {cz * cw} samples, more than the {target} "
            f"allowed by acceleration {acceleration} on a {rows}x{cols} grid"
        )
    z = (np.arange(rows) - rows // 2) / max(rows / 2, 1)
    w = (np.arange(cols) - cols // 2) / max(cols / 2, 1)
    growth = np.ones((rows, cols))
    if variable_density:
        growth = 1 + VD_STRENGTH * np.sqrt(z[:, None] ** 2 + w[None, :] ** 2)
    forced = np.flatnonzero(calib_mask).tolist()
    free = np.flatnonzero(~calib_mask)
    order = free[rng.permutation(free.size)].tolist()

    best, lo, hi = None, 0.0, float(max(rows, cols))
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        keys = np.rint(mid * growth * _QUANT).astype(np.int64).reshape(-1).tolist()
        pattern = _dart_throw(keys, order, forced, (rows, cols))
        count = int(pattern.sum())
        if count >= target:
            lo, best = mid, pattern
            if count <= target * (1 + tol):
                break
        else:
            hi = mid
        if hi - lo < 0.5 / (_QUANT * growth.max()):  # finer radii would change no stencil
            break
    if best is None:  # every radius tried was too large: start from the full grid
        best = np.ones((rows, cols), dtype=bool)
    surplus = int(best.sum()) - target
    if surplus > 0:
        removable = np.flatnonzero(best & ~calib_mask)
        best.reshape(-1)[rng.choice(removable, size=surplus, replace=False)] = False
    return best


class PoissonDiscMask:
    """Variable-density Poisson-disc mask over the ``(Z, W)`` plane of 3D k-space ``D=(Z, H, W)``,
    or over the whole ``(H, W)`` plane of 2D k-space whose two axes are both phase encodes (slices
    of a 3D scan after its readout was inverse transformed, as the mridata.org knee of the GLEAM
    paper: there the mask varies along ``H`` too).

    Args:
        acceleration: target ``Z * W / samples``, > 1 (met up to rounding of the sample count).
        calib: fully sampled centred calibration block ``(cz, cw)``.
        seed: seed of the internal ``np.random.Generator``.
        variable_density: radius grows with the distance from the centre (see module docstring).

    Call with ``(C, Z, H, W)`` -> float32 mask ``(1, Z, 1, W)``; with ``(C, H, W)`` ->
    ``(1, H, W)``.
    """

    def __init__(
        self,
        acceleration: float,
        calib: Sequence[int] = (0, 0),
        seed: int | None = None,
        variable_density: bool = True,
    ) -> None:
        check_acceleration(acceleration)
        calib = tuple(calib)
        if len(calib) != 2 or any(int(c) != c or c < 0 for c in calib):
            raise ValueError(f"calib must be two non-negative integers (cz, cw), got {calib}")
        self.acceleration = float(acceleration)
        self.calib = (int(calib[0]), int(calib[1]))
        self.variable_density = bool(variable_density)
        self.rng = np.random.default_rng(seed)

    def __call__(self, kspace_shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """Mask for 3D k-space ``(C, Z, H, W)`` -> float32 ``(1, Z, 1, W)``, or for 2D k-space
        ``(C, H, W)`` (both axes phase encodes) -> ``(1, H, W)``."""
        shape = tuple(int(n) for n in kspace_shape)
        if len(shape) not in (3, 4) or any(n < 1 for n in shape):
            raise ValueError(
                "PoissonDiscMask needs k-space shape (C, Z, H, W) (3D) or (C, H, W) (2D, both "
                f"axes phase encodes) with positive sizes, got {shape}"
            )
        rows, width = shape[1], shape[-1]
        rng = self.rng if seed is None else np.random.default_rng(seed)
        pattern = poisson_disc_pattern(
            (rows, width), self.acceleration, self.calib, rng, self.variable_density
        )
        mask = torch.from_numpy(pattern.astype(np.float32))
        return mask.reshape(1, rows, 1, width) if len(shape) == 4 else mask.reshape(1, rows, width)
