"""Coil sensitivities and noise levels measured on real scans, for realistic simulation.

1. :func:`estimate_coil_field`: ESPIRiT maps from the calibration region of real multi-coil
   k-space ``(C, H, W)`` (once, on a grid of at most 64 pixels per axis: the maps are smooth),
   fitted per coil by a smooth field, a low-order 2D Fourier series in coordinates relative to
   the object's bounding box (the object spans ``[-1, 1]`` on each axis; the series' period is
   4, so it does not wrap over the object, and a gradient penalty extends the maps smoothly
   outside the ESPIRiT support).
2. :func:`real_coil_maps`: the field evaluated for a target grid ``(H, W)`` or ``(Z, H, W)``,
   aligned to the target object's bounding box; per sample a random rotation, scaling and shift,
   a random subset of the coils in random order with random complex gains, and (3D) a smooth random
   per-coil profile along ``Z``. Maps are normalised to ``sum_c |S_c|^2 = 1`` inside the object
   support and are zero outside it, like ESPIRiT's crop.
3. :func:`measure_noise`: the noise std ``sigma`` of a real scan and its SNR as defined in
   :mod:`gleam_mri.physics.simulate` (``20 log10(rms(k0) / sigma)``).

The phase of the fitted maps is ESPIRiT's (relative to a virtual coil, so smooth); the simulated
image phase is added separately by :func:`gleam_mri.physics.simulate.simulate_multicoil`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from gleam_mri.fft import centred_fft
from gleam_mri.physics.coils import rss
from gleam_mri.physics.simulate import snr_db_of

# ESPIRiT runs on a grid of at most this many pixels per axis (the maps are smooth).
_ESPIRIT_GRID = 64
# Half the period of the Fourier series, in object half-widths (the object spans [-1, 1]).
_HALF_PERIOD = 2.0
# Outer k-space corners (every encoded |k| above this fraction of k_max) hold mostly noise.
_CORNER = 0.6


@dataclass(frozen=True, eq=False)
class CoilField:
    """Smooth coil sensitivities fitted to a real scan's ESPIRiT maps.

    Attributes:
        coeffs: complex128 ``(C, 2K+1, 2K+1)`` Fourier coefficients; the map of coil ``c`` at
            object-relative coordinates ``(u, v)`` is
            ``sum_kl coeffs[c, k, l] exp(i pi (k u + l v) / 2)`` with ``k, l`` in ``-K..K``.
        source: where the maps came from (a file name, for records).
        residual: relative rms misfit of the field to the ESPIRiT maps inside their support.
    """

    coeffs: np.ndarray
    source: str = ""
    residual: float = 0.0

    @property
    def n_coils(self) -> int:
        return int(self.coeffs.shape[0])

    def evaluate(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Maps complex128 ``(C, *u.shape)`` at object-relative coordinates ``u`` (rows), ``v``."""
        order = (self.coeffs.shape[-1] - 1) // 2
        freqs = np.arange(-order, order + 1) * (np.pi / _HALF_PERIOD)
        eu = np.exp(1j * u.reshape(-1, 1) * freqs)  # (P, 2K+1)
        ev = np.exp(1j * v.reshape(-1, 1) * freqs)
        maps = np.einsum("pk,pl,ckl->cp", eu, ev, self.coeffs, optimize=True)
        return maps.reshape(self.n_coils, *u.shape)


def _box_coords(shape: tuple[int, ...], support: np.ndarray | None) -> list[np.ndarray]:
    """Per axis of ``shape``, pixel coordinates relative to the support's bounding box: the box
    spans ``[-1, 1]`` (the whole grid when ``support`` is None or empty)."""
    coords = []
    for axis, n in enumerate(shape):
        index = np.arange(n, dtype=np.float64)
        lo, hi = 0, n - 1
        if support is not None:
            other = tuple(a for a in range(len(shape)) if a != axis)
            occupied = np.flatnonzero(support.any(axis=other))
            if occupied.size:
                lo, hi = int(occupied[0]), int(occupied[-1])
        centre, half = (lo + hi) / 2, max((hi - lo + 1) / 2, 1.0)
        coords.append((index - centre) / half)
    return coords


def fit_coil_field(
    maps: np.ndarray,
    support: np.ndarray,
    order: int = 6,
    smoothness: float = 1e-3,
    source: str = "",
) -> CoilField:
    """Fit smooth fields to coil maps ``(C, H, W)`` over a boolean ``support`` ``(H, W)``.

    Least squares over the support with a penalty ``smoothness * (k^2 + l^2)`` on each Fourier
    coefficient (a gradient penalty, which also fixes the field outside the support).
    """
    if maps.ndim != 3 or support.shape != maps.shape[1:]:
        raise ValueError(
            f"need maps (C, H, W) and support (H, W), got {maps.shape}, {support.shape}"
        )
    if support.sum() < 4:
        raise ValueError("the coil maps' support is (nearly) empty: no signal to fit")
    u, v = _box_coords(support.shape, support)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    freqs = np.arange(-order, order + 1)
    omega = freqs * (np.pi / _HALF_PERIOD)
    eu = np.exp(1j * uu[support][:, None] * omega)
    ev = np.exp(1j * vv[support][:, None] * omega)
    basis = (eu[:, :, None] * ev[:, None, :]).reshape(eu.shape[0], -1)  # (P, (2K+1)^2)
    targets = maps[:, support].T.astype(np.complex128)  # (P, C)
    penalty = (freqs[:, None] ** 2 + freqs[None, :] ** 2).reshape(-1).astype(np.float64)
    gram = basis.conj().T @ basis / len(basis) + np.diag(smoothness * penalty + 1e-9)
    coeffs = np.linalg.solve(gram, basis.conj().T @ targets / len(basis))  # (nb, C)
    misfit = np.linalg.norm(basis @ coeffs - targets) / max(np.linalg.norm(targets), 1e-30)
    size = 2 * order + 1
    return CoilField(coeffs.T.reshape(-1, size, size), source=source, residual=float(misfit))


def estimate_coil_field(
    kspace: np.ndarray,
    max_calib: int = 24,
    kernel: int = 6,
    crop: float = 0.9,
    order: int = 6,
    source: str = "",
) -> CoilField:
    """ESPIRiT maps of real k-space ``(C, H, W)`` (calibration: its fully sampled centre, at most
    ``max_calib`` per axis), computed on a grid of at most 64 pixels per axis and fitted by
    :func:`fit_coil_field`."""
    from gleam_mri.physics.espirit import espirit_maps, find_calibration_size

    sampled = torch.from_numpy(np.abs(kspace).sum(axis=0) > 0)
    calib = tuple(min(c, max_calib) for c in find_calibration_size(sampled[None], 2))
    if min(calib) < 2:
        raise ValueError(
            f"{source or 'k-space'}: fully sampled centre {calib} too small for ESPIRiT"
        )
    factor = min(1.0, _ESPIRIT_GRID / max(kspace.shape[1:]))
    grid = tuple(max(8, round(n * factor)) for n in kspace.shape[1:])
    maps = espirit_maps(
        torch.from_numpy(kspace),
        calib_size=calib,
        kernel_size=tuple(min(kernel, c) for c in calib),
        crop=crop,
        image_shape=grid,
    ).numpy()
    support = (np.abs(maps) ** 2).sum(axis=0) > 0.5
    return fit_coil_field(maps, support, order=order, source=source)


def object_support(magnitude: np.ndarray, threshold: float = 0.05, margin: int = 3) -> np.ndarray:
    """Boolean support ``(*D)`` of a magnitude image ``(*D)``: the Gaussian-smoothed image above
    ``threshold`` times its maximum, holes filled, dilated by ``margin`` pixels."""
    smooth = ndimage.gaussian_filter(np.asarray(magnitude, dtype=np.float32), 1.5)
    peak = float(smooth.max())
    if peak <= 0:
        return np.ones(magnitude.shape, dtype=bool)
    mask = ndimage.binary_fill_holes(smooth > threshold * peak)
    if margin > 0:
        mask = ndimage.binary_dilation(mask, iterations=margin)
    return mask


def real_coil_maps(
    field: CoilField,
    n_coils: int,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    support: np.ndarray | None = None,
    perturb: bool = True,
) -> np.ndarray:
    """Coil maps complex64 ``(n_coils, *shape)`` for a ``(H, W)`` or ``(Z, H, W)`` grid.

    The field is aligned to the bounding box of ``support`` (boolean ``shape``; ``None``: the whole
    grid). With ``perturb``: a rotation ``U(-10, 10)`` degrees, scaling ``U(0.9, 1.1)``, shift
    ``U(-0.08, 0.08)`` object half-widths per axis, ``n_coils`` of the field's coils drawn in
    random order, per-coil gains ``exp(N(0, 0.1))`` and phases ``U(-pi, pi)``, and (3D) per-coil
    profiles ``exp(a w + b w^2 + i p w)`` along ``Z`` (``w`` in ``[-1, 1]`` over the object).
    Without it: the first ``n_coils`` coils, the field extruded along ``Z``. Then
    ``sum_c |S_c|^2 = 1`` on the support and ``S = 0`` outside.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (Z, H, W), got {shape}")
    if not 1 <= n_coils <= field.n_coils:
        raise ValueError(
            f"n_coils must be in 1..{field.n_coils} (the coils of {field.source or 'the field'}), "
            f"got {n_coils}"
        )
    if support is not None and support.shape != shape:
        raise ValueError(f"support shape {support.shape} does not match {shape}")
    in_plane = None if support is None else support.reshape(-1, *shape[-2:]).any(axis=0)
    u, v = np.meshgrid(*_box_coords(shape[-2:], in_plane), indexing="ij")
    coils = np.arange(n_coils)
    if perturb:
        angle = np.deg2rad(rng.uniform(-10.0, 10.0))
        scale = rng.uniform(0.9, 1.1)
        shift = rng.uniform(-0.08, 0.08, size=2)
        cos, sin = math.cos(angle), math.sin(angle)
        u, v = (cos * u - sin * v) / scale + shift[0], (sin * u + cos * v) / scale + shift[1]
        coils = rng.permutation(field.n_coils)[:n_coils]
    maps = field.evaluate(u, v)[coils]  # (n_coils, H, W)
    if perturb:
        gains = np.exp(rng.normal(0.0, 0.1, n_coils) + 1j * rng.uniform(-np.pi, np.pi, n_coils))
        maps = maps * gains[:, None, None]
    if len(shape) == 3:
        maps = np.repeat(maps[:, None], shape[0], axis=1)
        if perturb:
            (w,) = _box_coords(shape[:1], None if support is None else support.any(axis=(1, 2)))
            a, b, p = (rng.normal(0.0, s, (n_coils, 1)) for s in (0.25, 0.15, 0.3))
            profile = np.exp(a * w + b * w**2 + 1j * p * w)  # (n_coils, Z)
            maps = maps * profile[:, :, None, None]
    norm = rss(maps, dim=0)
    inside = norm > 1e-12 * max(float(norm.max()), 1e-300)
    if support is not None:
        inside &= support
    maps = np.where(inside, maps / np.where(inside, norm, 1.0), 0.0)
    return maps.astype(np.complex64)


@dataclass(frozen=True)
class NoiseLevel:
    """Noise of a scan: ``sigma`` (k-space std, ``E|n|^2 = sigma^2``), ``snr_db`` as defined in
    :mod:`gleam_mri.physics.simulate`, the ``method`` used and how many samples it read."""

    sigma: float
    snr_db: float
    method: str
    n_samples: int


def measure_noise(kspace: np.ndarray, fft_ndim: int = 2) -> NoiseLevel:
    """Noise std and SNR of real k-space ``(C, *D)`` (``D`` of ``fft_ndim`` encoded axes, readout
    along ``H``, the second-last axis), without a noise scan.

    Fully sampled ("background"): k-space is inverse transformed along the phase-encoding axes
    only. There the noise is stationary (the readout filter colours it along the readout, which is
    why the image background is darker near the readout edges), and positions whose profile
    (mean energy over coils and readout) is below 1.5 times the lowest one hold no object: their
    ``median(|y|^2) / ln 2`` per coil is its ``sigma_c^2`` (robust to sparse ghosts), and
    ``sigma^2`` is the mean over coils. Undersampled ("corners"): the same median over the
    sampled outer k-space corners (every encoded ``|k| > 0.6 k_max``), and the signal power
    ``rms(k)^2`` weighted by the inverse local sampling density (9-sample box). The corners
    still hold some signal, so this over-estimates ``sigma`` (by about 5 % at 20 dB on simulated
    128 x 128 brain slices, 19 % on the real FLASH brain): an upper bound.
    """
    kspace = np.asarray(kspace)
    if not np.iscomplexobj(kspace) or kspace.ndim != fft_ndim + 1:
        raise ValueError(f"need complex k-space (C, *D) with {fft_ndim} encoded axes")
    power = np.abs(kspace.astype(np.complex128)) ** 2
    sampled = power.sum(axis=0) > 0
    if sampled.all():
        method = "background"
        phase_axes = tuple(a for a in range(1, fft_ndim + 1) if a != fft_ndim - 1)
        hybrid = np.abs(centred_fft(kspace.astype(np.complex128), phase_axes, inverse=True)) ** 2
        profile = hybrid.mean(axis=(0, fft_ndim - 1))  # over coils and readout
        empty = profile <= 1.5 * profile.min()
        noise = np.moveaxis(hybrid, fft_ndim - 1, 1)[:, :, empty]  # (C, H, positions)
        total = float(power.mean())
    else:
        method = "corners"
        grids = np.meshgrid(
            *[np.abs(np.arange(n) - n // 2) / (n / 2) for n in sampled.shape], indexing="ij"
        )
        corner = sampled & np.logical_and.reduce([g > _CORNER for g in grids])
        if not corner.any():
            raise ValueError("no sampled k-space in the outer corners to measure the noise from")
        noise = power[:, corner]
        density = ndimage.uniform_filter(sampled.astype(np.float64), size=9, mode="nearest")
        total = float((power[:, sampled] / density[sampled]).sum() / power[0].size / len(power))
    per_coil = np.median(noise.reshape(len(noise), -1), axis=1) / math.log(2)
    variance = float(per_coil.mean())
    if not variance > 0:
        raise ValueError("the noise region is all zeros: cannot measure the noise level")
    if total <= variance:
        raise ValueError("the k-space holds no signal above the measured noise level")
    sigma = math.sqrt(variance)
    return NoiseLevel(sigma, snr_db_of(math.sqrt(total - variance), sigma), method, noise.size)
