"""ESPIRiT maps: exactness of the image-space operator, SENSE quality vs true maps, 3D, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit

from gleam_mri.fft import fftnc, ifftnc
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.espirit import (
    calibration_region,
    espirit_maps,
    find_calibration_size,
    image_space_gram,
)
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense


def _soft_ellipsoid(grids, centre, radii, angle, value, edge=0.03):
    """A (hyper-)ellipsoid with a sigmoid edge, rotated by ``angle`` in the last two axes."""
    shifted = [g - c for g, c in zip(grids, centre, strict=True)]
    c, s = math.cos(angle), math.sin(angle)
    shifted[-1], shifted[-2] = c * shifted[-1] + s * shifted[-2], -s * shifted[-1] + c * shifted[-2]
    r = np.sqrt(sum((d / rad) ** 2 for d, rad in zip(shifted, radii, strict=True)))
    return value * expit((1 - r) / edge)


def _phantom(shape: tuple[int, ...], edge: float = 0.01) -> torch.Tensor:
    """Overlapping ellipses (2D) or ellipsoids (3D) with sigmoid edges of width ``edge`` (in units
    of the half field of view), fine texture and a smooth phase; complex64 ``shape``."""
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in shape], indexing="ij")
    y, x = grids[-2], grids[-1]
    lead = len(shape) - 2
    blobs = [  # (centre, radii, angle, value) in the (H, W) plane
        ((0.0, 0.0), (0.85, 0.7), 0.1, 1.0),
        ((0.1, -0.2), (0.3, 0.2), 0.5, -0.4),
        ((-0.3, 0.25), (0.2, 0.15), -0.3, 0.5),
        ((0.4, 0.2), (0.15, 0.25), 0.0, 0.3),
        ((-0.5, -0.3), (0.08, 0.05), 0.0, 0.4),
        ((0.55, -0.35), (0.05, 0.08), 0.0, -0.3),
    ]
    img = sum(
        _soft_ellipsoid(grids, (0.0,) * lead + c, (0.8,) * lead + r, a, v, edge)
        for c, r, a, v in blobs
    )
    img = img * (1 + 0.15 * np.sin(16 * np.pi * x) * np.cos(11 * np.pi * y))
    return torch.from_numpy(img * np.exp(0.3j * np.pi * (x + 0.5 * y))).to(torch.complex64)


def _add_noise(y: torch.Tensor, rel: float, rng: np.random.Generator) -> torch.Tensor:
    noise = rng.standard_normal((2, *y.shape)) * rel * y.abs().max().item() / math.sqrt(2)
    return y + torch.from_numpy(noise[0] + 1j * noise[1]).to(y.dtype)


def _line_mask(width: int, accel: int, centre: int, rng: np.random.Generator) -> torch.Tensor:
    """``round(width / accel)`` phase-encoding lines along W: ``centre`` ACS lines around DC plus
    lines drawn uniformly at random without replacement from the rest. Shape ``(1, W)``: the mask
    is constant along the readout H."""
    keep = np.zeros(width, dtype=bool)
    start = width // 2 - centre // 2
    keep[start : start + centre] = True
    outer = np.flatnonzero(~keep)
    keep[rng.choice(outer, round(width / accel) - centre, replace=False)] = True
    return torch.from_numpy(keep.astype(np.float32))[None, :]


def _magnitude_psnr(recon: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> float:
    """PSNR of magnitude images over ``region``, data range = max |truth| (phase-agnostic, since
    ESPIRiT maps carry a different smooth phase reference than the true maps)."""
    err = (recon.abs() - truth.abs())[region]
    return 10 * math.log10(truth.abs().max().item() ** 2 / (err**2).mean().item())


@pytest.mark.parametrize(
    "kernel_size,grid",
    [((5, 5), (7, 9)), ((4, 3), (16, 13)), ((3, 4, 3), (8, 9, 7)), ((6, 6), (24, 20))],
)
def test_image_space_gram_equals_zero_padded_kernel_images(kernel_size, grid):
    """The small-grid computation equals N/prod(k) * sum_j K_j K_j^H with K_j = ifftnc(pad(k_j)),
    including grids smaller than 2k-1 (periodic wrap) and odd sizes."""
    gen = torch.Generator().manual_seed(0)
    kernels = torch.randn(5, 3, *kernel_size, dtype=torch.complex128, generator=gen)
    padded = torch.zeros(5, 3, *grid, dtype=torch.complex128)
    starts = [n // 2 - k // 2 for n, k in zip(grid, kernel_size, strict=True)]
    block = tuple(slice(s, s + k) for s, k in zip(starts, kernel_size, strict=True))
    padded[(slice(None), slice(None), *block)] = kernels
    images = ifftnc(padded, len(grid))
    direct = torch.einsum("jc...,jd...->cd...", images, images.conj())
    direct = direct * math.prod(grid) / math.prod(kernel_size)
    fast = image_space_gram(kernels, grid)
    assert fast.shape == (3, 3, *grid)
    torch.testing.assert_close(fast, direct, rtol=0, atol=1e-12 * direct.abs().max().item())


@pytest.mark.parametrize("shape", [(80, 240), (63, 251)])
def test_cg_sense_with_espirit_maps_matches_true_maps(shape):
    """The issue's requirement: SENSE with estimated maps is within 1 dB PSNR of SENSE with the
    true maps.

    8 birdcage coils, random phase-encoding lines at R=4 with 24 centre (ACS) lines (W is wide
    enough for R=4 to leave lines outside the ACS), complex noise of std 2e-4 * max|k-space|.
    Maps are estimated from the undersampled data's 24 x 24 calibration region; CG-SENSE with
    lam 1e-3 (maps have unit norm, so A^H A <= 1) and 30 iterations. PSNR is of magnitude images
    inside the object support (|x| > 5% of its max), data range max |x|: magnitudes, because the
    ESPIRiT maps carry another smooth phase than the true maps. The estimated maps are zero
    outside the ESPIRiT crop; comparing with the true maps restricted to that same crop isolates
    the accuracy of the estimate.
    """
    rng = np.random.default_rng(7)
    image = _phantom(shape)
    true_maps = birdcage_maps(8, shape)
    kspace = SenseOp(true_maps[None]).forward(image[None])[0]
    mask = _line_mask(shape[1], accel=4, centre=24, rng=rng)
    undersampled = _add_noise(kspace, 2e-4, rng) * mask
    assert find_calibration_size(mask, shape=shape)[1] >= 24

    est = espirit_maps(undersampled, calib_size=24, kernel_size=6)
    assert est.shape == true_maps.shape and est.dtype == torch.complex64
    support = image.abs() > 0.05 * image.abs().max()
    alignment = (est.conj() * true_maps).sum(0).abs()  # |<s_est, s_true>|, 1 for equal directions
    assert alignment[support].min() > 0.999

    def recon(maps: torch.Tensor) -> torch.Tensor:
        return cg_sense(SenseOp(maps[None], mask), undersampled[None], lam=1e-3, max_iter=30)[0]

    zero_filled = SenseOp(true_maps[None], mask).adjoint(undersampled[None])[0]
    psnr_zero_filled = _magnitude_psnr(zero_filled, image, support)
    psnr_true = _magnitude_psnr(recon(true_maps), image, support)
    psnr_est = _magnitude_psnr(recon(est), image, support)
    cropped = true_maps * (est.abs().sum(0) > 0)
    psnr_cropped = _magnitude_psnr(recon(cropped), image, support)
    assert psnr_true > psnr_zero_filled + 3  # the maps matter: SENSE removes the aliasing
    assert psnr_est >= psnr_true - 1.0, f"estimated {psnr_est:.2f} dB vs true {psnr_true:.2f} dB"
    assert abs(psnr_est - psnr_cropped) < 0.2


def test_maps_are_unit_norm_inside_crop_and_zero_outside(rng):
    shape = (48, 40)
    image = _phantom(shape)
    kspace = SenseOp(birdcage_maps(6, shape)[None]).forward(image[None])[0]
    maps = espirit_maps(_add_noise(kspace, 1e-3, rng), calib_size=20, kernel_size=5)
    norm = maps.abs().pow(2).sum(0).sqrt()
    inside = norm > 0
    torch.testing.assert_close(norm[inside], torch.ones_like(norm[inside]), rtol=0, atol=1e-5)
    assert bool(inside[image.abs() > 0.05 * image.abs().max()].all())
    assert not bool(inside[0, 0]) and not bool(inside[-1, -1])  # empty corners are cropped


def test_calibration_region_alone_with_image_shape_gives_same_maps():
    shape = (40, 36)
    kspace = SenseOp(birdcage_maps(4, shape)[None]).forward(_phantom(shape)[None])[0]
    full = espirit_maps(kspace, calib_size=16, kernel_size=5)
    calib = calibration_region(kspace, 16)
    alone = espirit_maps(calib, calib_size=16, kernel_size=5, image_shape=shape)
    torch.testing.assert_close(alone, full, rtol=0, atol=1e-5)


def test_espirit_3d_maps_reproduce_coil_images():
    """Fully sampled 3D data: S S^H x_coils ~ x_coils inside the object (projection residual)."""
    shape = (16, 24, 20)
    image = _phantom(shape)
    maps = birdcage_maps(4, shape)
    coil_images = maps * image
    kspace = fftnc(coil_images, 3).to(torch.complex128)
    est = espirit_maps(kspace, calib_size=12, kernel_size=4, fft_ndim=3, chunk_size=1000)
    assert est.shape == (4, *shape) and est.dtype == torch.complex128
    coil_images = coil_images.to(torch.complex128)
    projected = est * (est.conj() * coil_images).sum(0)
    inside = image.abs() > 0.05 * image.abs().max()
    residual = (projected - coil_images)[:, inside].norm() / coil_images[:, inside].norm()
    assert residual < 0.02


def test_find_calibration_size_2d_block_lines_and_3d(rng):
    mask = torch.from_numpy(rng.random((50, 41)) < 0.15)
    mask[25 - 12 : 25 + 12, 20 - 9 : 20 + 9] = True  # a 24 x 18 block, DC at (25, 20)
    mask[25 - 13, :] = False  # keep the block maximal on both sides
    mask[25 + 12, :] = False
    mask[:, 20 - 10] = False
    mask[:, 20 + 9] = False
    assert find_calibration_size(mask) == (24, 18)
    assert find_calibration_size(mask[None, None].expand(2, 3, 50, 41)) == (24, 18)

    lines = torch.zeros(1, 30)
    lines[0, 15 - 5 : 15 + 5] = 1
    lines[0, 1::4] = 1
    assert find_calibration_size(lines, shape=(33, 30)) == (33, 10)

    vol = torch.zeros(9, 10, 11, dtype=torch.bool)
    vol[4 - 2 : 4 + 2, :, 5 - 3 : 5 + 4] = True
    assert find_calibration_size(vol, fft_ndim=3) == (4, 10, 7)


def test_calibration_region_keeps_dc_and_leading_axes():
    for full, calib in [((20, 17), (8, 7)), ((19, 16), (5, 6))]:
        kspace = torch.zeros(2, 3, *full, dtype=torch.complex64)  # (C, T, H, W): cine
        kspace[..., full[0] // 2, full[1] // 2] = 1
        crop = calibration_region(kspace, calib, fft_ndim=2)
        assert crop.shape == (2, 3, *calib)
        assert bool((crop[..., calib[0] // 2, calib[1] // 2] == 1).all())
        assert crop.abs().sum() == 6


def test_errors_name_the_problem():
    kspace = torch.ones(4, 16, 16, dtype=torch.complex64)
    with pytest.raises(ValueError, match="larger than the encoded k-space"):
        espirit_maps(kspace, calib_size=24)
    with pytest.raises(ValueError, match="all zeros"):
        espirit_maps(torch.zeros(4, 32, 32, dtype=torch.complex64), calib_size=12)
    holey = torch.ones(4, 32, 32, dtype=torch.complex64)
    holey[:, 16, 8] = 0  # inside a 16 x 16 calibration region, outside a 12 x 12 one
    with pytest.raises(ValueError, match="1 unsampled locations"):
        espirit_maps(holey, calib_size=16, kernel_size=4)
    assert espirit_maps(holey, calib_size=12, kernel_size=4).shape == (4, 32, 32)
    for bad in (float("nan"), float("inf")):
        corrupt = kspace.clone()
        corrupt[1, 3, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            espirit_maps(corrupt, calib_size=8, kernel_size=4)
    with pytest.raises(ValueError, match="3 axes"):
        espirit_maps(kspace[0], calib_size=8)
    with pytest.raises(ValueError, match="4 axes"):
        espirit_maps(kspace, calib_size=8, fft_ndim=3)
    with pytest.raises(TypeError, match="complex64 or complex128"):
        espirit_maps(kspace.real, calib_size=8)
    with pytest.raises(ValueError, match="exceeds the calibration size"):
        espirit_maps(kspace, calib_size=8, kernel_size=10)
    with pytest.raises(ValueError, match="threshold"):
        espirit_maps(kspace, calib_size=8, kernel_size=4, threshold=1.5)
    with pytest.raises(ValueError, match="reference_coil"):
        espirit_maps(kspace, calib_size=8, kernel_size=4, reference_coil=4)
    with pytest.raises(ValueError, match="k-space centre"):
        find_calibration_size(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="complex"):
        find_calibration_size(kspace[0])
