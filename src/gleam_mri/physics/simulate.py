"""Realistic multi-coil acquisitions from a magnitude image: coil maps, smooth phase, noise.

Signal-to-noise ratio
---------------------
``snr_db = 20 log10(rms(k0) / sigma)``, where ``rms(k0)`` is the root-mean-square of the
noise-free, fully sampled k-space over all coils and all samples, and ``sigma`` is the standard
deviation of the complex Gaussian noise added to each k-space sample (``E|n|^2 = sigma^2``, real
and imaginary parts each ``sigma / sqrt(2)``). Because the FFT is orthonormal (Parseval), this is
also the rms of the noise-free coil images over the whole field of view divided by the per-pixel
noise std of each coil image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from gleam_mri.physics.coils import birdcage_maps, rss
from gleam_mri.physics.operators import SenseOp


@dataclass(frozen=True, eq=False)
class SimulatedAcquisition:
    """A simulated fully sampled multi-coil acquisition (numpy arrays).

    Attributes:
        kspace: complex64 ``(C, *D)``, noise-free k-space plus complex Gaussian noise.
        maps: complex64 ``(C, *D)`` coil sensitivities (cine: the same maps in every frame).
        image: complex64 ``(*D)``, the magnitude times a smooth phase.
        target: float32 ``(*D)``, root-sum-of-squares of the noise-free coil images
            (equal to ``|image|`` when ``sum_c |maps_c|^2 = 1``).
        noise_std: ``sigma`` of the k-space noise (0.0 without noise).
    """

    kspace: np.ndarray
    maps: np.ndarray
    image: np.ndarray
    target: np.ndarray
    noise_std: float


def _spatial_coords(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Open grids in ``[-1, 1)`` per spatial axis."""
    grids = []
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        grids.append(((np.arange(n) - n // 2) / max(n / 2, 1)).reshape(view))
    return grids


def smooth_phase(
    shape: tuple[int, ...], rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """A random smooth phase map (radians), float64 ``shape``: a second-order polynomial.

    A random global offset in ``[-pi, pi)`` plus linear and quadratic terms whose typical size
    over the field of view is about ``strength`` radians (0 gives a zero phase).
    """
    grids = _spatial_coords(shape)
    phase = np.full(shape, rng.uniform(-np.pi, np.pi))
    for i, gi in enumerate(grids):
        phase = phase + rng.normal(0.0, 0.6) * gi
        for gj in grids[i:]:
            phase = phase + rng.normal(0.0, 0.4) * gi * gj
    return strength * phase


def perturbed_birdcage_maps(
    n_coils: int, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Birdcage maps, complex64 ``(C, *shape)``, randomly scaled and rotated in the (H, W) plane.

    The coil radius is scaled by ``U(0.85, 1.2)`` and the maps rotated by ``U(-15, 15)`` degrees,
    then renormalised so that ``sum_c |S_c|^2 = 1`` everywhere.
    """
    radius = 1.5 * rng.uniform(0.85, 1.2)
    angle = rng.uniform(-15.0, 15.0)
    maps = birdcage_maps(n_coils, shape, radius=radius).numpy()
    rotate = {"angle": angle, "axes": (-1, -2), "reshape": False, "order": 1, "mode": "nearest"}
    maps = ndimage.rotate(maps.real, **rotate) + 1j * ndimage.rotate(maps.imag, **rotate)
    maps /= rss(maps, dim=0, keepdim=True)
    return maps.astype(np.complex64)


def signal_rms(kspace: np.ndarray) -> float:
    """Root-mean-square of k-space ``(C, *D)`` over all coils and samples (float64)."""
    return float(np.sqrt(np.mean(np.abs(np.asarray(kspace).astype(np.complex128)) ** 2)))


def noise_std_for_snr(rms: float, snr_db: float) -> float:
    """``sigma`` that gives ``snr_db`` for noise-free k-space of root-mean-square ``rms``."""
    return rms / 10 ** (snr_db / 20)


def snr_db_of(rms: float, sigma: float) -> float:
    """``20 log10(rms / sigma)``: the SNR of noise-free k-space ``rms`` with noise std ``sigma``."""
    return 20 * float(np.log10(rms / sigma))


def _check_inputs(image: object, n_coils: object, fft_ndim: object, rng: object) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if np.iscomplexobj(image) or not np.issubdtype(image.dtype, np.number):
        raise TypeError(f"image must be a real magnitude image, got dtype {image.dtype}")
    if fft_ndim not in (2, 3):
        raise ValueError(f"fft_ndim must be 2 or 3, got {fft_ndim!r}")
    allowed = (2, 3) if fft_ndim == 2 else (3,)
    if image.ndim not in allowed:
        raise ValueError(
            f"image must have {' or '.join(map(str, allowed))} axes for fft_ndim={fft_ndim} "
            f"((H, W), cine (T, H, W) or 3D (Z, H, W)), got shape {image.shape}"
        )
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or infinite values")
    if image.min() < 0:
        raise ValueError("image must be a magnitude image (non-negative values)")
    if not isinstance(n_coils, (int, np.integer)) or isinstance(n_coils, bool) or n_coils < 1:
        raise ValueError(f"n_coils must be a positive int, got {n_coils!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _resolve_maps(
    maps: np.ndarray | None,
    n_coils: int,
    shape: tuple[int, ...],
    spatial: tuple[int, ...],
    rng: np.random.Generator,
    perturb_maps: bool,
) -> np.ndarray:
    """Coil maps complex64 ``(C, *shape)``, given or simulated on ``spatial`` and broadcast."""
    if maps is None:
        if perturb_maps:
            maps = perturbed_birdcage_maps(n_coils, spatial, rng)
        else:
            maps = birdcage_maps(n_coils, spatial).numpy()
    elif not isinstance(maps, np.ndarray) or not np.iscomplexobj(maps):
        raise TypeError("maps must be a complex numpy array of shape (C, *D)")
    if maps.shape not in ((n_coils, *shape), (n_coils, *spatial)):
        raise ValueError(
            f"maps must have shape {(n_coils, *shape)} or {(n_coils, *spatial)}, got {maps.shape}"
        )
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps contain NaN or infinite values")
    if maps.shape != (n_coils, *shape):
        leading = (1,) * (len(shape) - len(spatial))
        maps = np.broadcast_to(maps.reshape(n_coils, *leading, *spatial), (n_coils, *shape))
    return np.ascontiguousarray(maps, dtype=np.complex64)


def simulate_multicoil(
    image: np.ndarray,
    n_coils: int,
    fft_ndim: int,
    rng: np.random.Generator,
    snr_db: float | None = 30.0,
    phase_strength: float = 1.0,
    maps: np.ndarray | None = None,
    perturb_maps: bool = True,
) -> SimulatedAcquisition:
    """Simulate fully sampled multi-coil k-space of a magnitude image.

    Args:
        image: real, non-negative magnitude ``(*D)``: 2D ``(H, W)`` or cine ``(T, H, W)`` with
            ``fft_ndim=2``, 3D ``(Z, H, W)`` with ``fft_ndim=3``.
        n_coils: number of coils ``C``.
        fft_ndim: number of trailing Fourier-encoded axes (2 or 3).
        rng: source of all randomness (map perturbation, phase, noise, in that order).
        snr_db: k-space SNR in dB as defined in the module docstring; ``None`` adds no noise.
        phase_strength: scale of the smooth random phase (0: the image stays real).
        maps: optional complex coil maps ``(C, *D)`` (cine: also ``(C, H, W)``); by default
            :func:`gleam_mri.physics.coils.birdcage_maps` on the encoded axes, perturbed by a
            random rotation and scale when ``perturb_maps``. Maps and phase never vary over ``T``.

    Returns:
        A :class:`SimulatedAcquisition`; ``kspace`` equals
        ``SenseOp(maps[None], None, fft_ndim).forward(image[None])[0]`` plus noise.
    """
    _check_inputs(image, n_coils, fft_ndim, rng)
    if snr_db is not None and not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite or None, got {snr_db!r}")
    if not np.isfinite(phase_strength):
        raise ValueError(f"phase_strength must be finite, got {phase_strength!r}")
    shape = image.shape
    spatial = shape[-fft_ndim:]
    coil_maps = _resolve_maps(maps, int(n_coils), shape, spatial, rng, perturb_maps)
    phase = smooth_phase(spatial, rng, phase_strength)
    x = (image.astype(np.float64) * np.exp(1j * phase)).astype(np.complex64)

    op = SenseOp(torch.from_numpy(coil_maps)[None], None, fft_ndim)
    kspace = op.forward(torch.from_numpy(x)[None])[0].numpy()
    target = rss(coil_maps * x, dim=0).astype(np.float32)

    sigma = 0.0
    if snr_db is not None:
        rms = signal_rms(kspace)
        if rms == 0:
            raise ValueError("cannot set a noise level from the SNR of an all-zero image")
        sigma = noise_std_for_snr(rms, snr_db)
        noise = rng.standard_normal((2, *kspace.shape), dtype=np.float32) * (sigma / np.sqrt(2))
        kspace = kspace + (noise[0] + 1j * noise[1]).astype(np.complex64)
    return SimulatedAcquisition(
        kspace=kspace.astype(np.complex64, copy=False),
        maps=coil_maps,
        image=x,
        target=target,
        noise_std=float(sigma),
    )
