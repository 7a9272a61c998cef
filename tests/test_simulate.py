"""Multi-coil simulation: the SENSE identity, the SNR definition, coil maps, smooth phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.operators import SenseOp
from gleam_mri.physics.phantoms import cine_phantom, phantom_2d, phantom_3d
from gleam_mri.physics.simulate import SimulatedAcquisition, simulate_multicoil

# (image shape, fft_ndim): 2D, 3D and cine, with odd sizes.
CASES = [((33, 27), 2), ((7, 21, 19), 3), ((5, 23, 17), 2)]
IDS = ["2d", "3d", "cine"]


def _image(shape: tuple[int, ...], fft_ndim: int, rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 2:
        return phantom_2d(shape, rng)
    if fft_ndim == 3:
        return phantom_3d(shape, rng)
    return cine_phantom(shape[0], shape[1:], rng)


def _sense(acq: SimulatedAcquisition, fft_ndim: int) -> np.ndarray:
    maps = torch.from_numpy(acq.maps)[None]
    return SenseOp(maps, None, fft_ndim).forward(torch.from_numpy(acq.image)[None])[0].numpy()


def _numpy_fft(x: np.ndarray, fft_ndim: int) -> np.ndarray:
    axes = tuple(range(-fft_ndim, 0))
    x = np.fft.ifftshift(x.astype(np.complex128), axes=axes)
    return np.fft.fftshift(np.fft.fftn(x, axes=axes, norm="ortho"), axes=axes)


def _snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    rms = lambda a: np.sqrt(np.mean(np.abs(a.astype(np.complex128)) ** 2))  # noqa: E731
    return float(20 * np.log10(rms(signal) / rms(noise)))


@pytest.mark.parametrize(("shape", "fft_ndim"), CASES, ids=IDS)
def test_shapes_dtypes_and_noiseless_identity(shape, fft_ndim, rng: np.random.Generator):
    magnitude = _image(shape, fft_ndim, rng)
    acq = simulate_multicoil(magnitude, 6, fft_ndim, rng, snr_db=None)
    assert acq.kspace.shape == acq.maps.shape == (6, *shape)
    assert acq.image.shape == acq.target.shape == shape
    assert acq.kspace.dtype == acq.maps.dtype == acq.image.dtype == np.complex64
    assert acq.target.dtype == np.float32
    assert acq.noise_std == 0.0
    np.testing.assert_allclose(np.abs(acq.image), magnitude, rtol=1e-6, atol=1e-7)
    # k-space is exactly the SENSE forward model, and matches an independent float64 FFT.
    np.testing.assert_array_equal(acq.kspace, _sense(acq, fft_ndim))
    reference = _numpy_fft(acq.maps * acq.image, fft_ndim)
    assert np.abs(acq.kspace - reference).max() < 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize(("shape", "fft_ndim"), CASES, ids=IDS)
def test_maps_normalised_and_target_is_magnitude(shape, fft_ndim, rng: np.random.Generator):
    magnitude = _image(shape, fft_ndim, rng)
    acq = simulate_multicoil(magnitude, 8, fft_ndim, rng, snr_db=20.0)
    np.testing.assert_allclose((np.abs(acq.maps) ** 2).sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(acq.target, magnitude, rtol=1e-5, atol=1e-6)
    # The target is the RSS of the noise-free coil images, whatever the noise.
    coil_images = acq.maps * acq.image
    np.testing.assert_allclose(acq.target, np.sqrt((np.abs(coil_images) ** 2).sum(0)), atol=1e-6)


@pytest.mark.parametrize("snr_db", [5.0, 20.0, 40.0])
@pytest.mark.parametrize(("shape", "fft_ndim"), CASES, ids=IDS)
def test_measured_snr_matches_request(shape, fft_ndim, snr_db, rng: np.random.Generator):
    acq = simulate_multicoil(_image(shape, fft_ndim, rng), 8, fft_ndim, rng, snr_db=snr_db)
    clean = _sense(acq, fft_ndim)
    noise = acq.kspace - clean
    assert abs(_snr_db(clean, noise) - snr_db) < 0.5
    sigma = acq.noise_std
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(sigma, rel=0.05)
    # Circular complex noise: real and imaginary parts each carry half the variance.
    assert np.std(noise.real) == pytest.approx(sigma / np.sqrt(2), rel=0.05)
    assert np.std(noise.imag) == pytest.approx(sigma / np.sqrt(2), rel=0.05)
    assert abs(np.mean(noise.real * noise.imag)) < 0.05 * sigma**2


def test_seeds_reproducible_and_different():
    img = phantom_2d((32, 32), np.random.default_rng(0))
    a = simulate_multicoil(img, 4, 2, np.random.default_rng(7))
    b = simulate_multicoil(img, 4, 2, np.random.default_rng(7))
    c = simulate_multicoil(img, 4, 2, np.random.default_rng(8))
    for field in ("kspace", "maps", "image", "target"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.abs(a.maps - c.maps).max() > 0.01  # randomly rotated / scaled maps
    assert np.abs(np.angle(a.image * c.image.conj())).max() > 0.1  # another phase
    with pytest.raises(AttributeError):
        a.kspace = c.kspace  # frozen


def test_default_maps_are_perturbed_birdcage():
    img = phantom_2d((32, 32), np.random.default_rng(0))
    plain = simulate_multicoil(img, 4, 2, np.random.default_rng(1), perturb_maps=False)
    np.testing.assert_array_equal(plain.maps, birdcage_maps(4, (32, 32)).numpy())
    perturbed = simulate_multicoil(img, 4, 2, np.random.default_rng(1))
    difference = np.abs(perturbed.maps - plain.maps).max()
    assert 0.01 < difference < 1.0  # a small perturbation, not another map set


def test_smooth_phase():
    img = phantom_2d((48, 48), np.random.default_rng(0))
    real = simulate_multicoil(img, 2, 2, np.random.default_rng(1), phase_strength=0.0)
    angle = np.angle(real.image[img > 0])
    assert np.allclose(angle, angle[0])  # only a global phase offset
    acq = simulate_multicoil(img, 2, 2, np.random.default_rng(1), phase_strength=1.0)
    x = acq.image
    steps = [np.abs(np.angle(x[1:] * x[:-1].conj())), np.abs(np.angle(x[:, 1:] * x[:, :-1].conj()))]
    both = [(img[1:] > 0) & (img[:-1] > 0), (img[:, 1:] > 0) & (img[:, :-1] > 0)]
    assert max(s[m].max() for s, m in zip(steps, both, strict=True)) < 0.3  # smooth per pixel
    phase = np.angle(x * np.exp(-1j * np.angle(x[24, 24])))[img > 0]
    assert np.ptp(phase) > 0.3  # but not constant


def test_cine_maps_and_phase_constant_over_time(rng: np.random.Generator):
    frames = cine_phantom(6, (24, 20), rng)
    acq = simulate_multicoil(frames, 4, 2, rng, snr_db=None)
    np.testing.assert_array_equal(acq.maps, np.broadcast_to(acq.maps[:, :1], acq.maps.shape))
    unit = np.where(frames > 0, acq.image / np.maximum(frames, 1e-12), 0)
    both = (frames[0] > 0) & (frames[3] > 0)
    np.testing.assert_allclose(unit[0][both], unit[3][both], atol=1e-5)


def test_given_maps(rng: np.random.Generator):
    img = phantom_2d((20, 24), rng)
    maps = 2 * birdcage_maps(3, (20, 24)).numpy()  # not normalised: sum |S|^2 = 4
    acq = simulate_multicoil(img, 3, 2, rng, snr_db=None, maps=maps)
    np.testing.assert_array_equal(acq.maps, maps)
    np.testing.assert_allclose(acq.target, 2 * img, rtol=1e-5, atol=1e-6)
    frames = cine_phantom(4, (20, 24), rng)
    cine = simulate_multicoil(frames, 3, 2, rng, snr_db=None, maps=maps)  # (C, H, W) for cine
    assert cine.maps.shape == (3, 4, 20, 24)
    np.testing.assert_array_equal(cine.maps[:, 2], maps)
    np.testing.assert_array_equal(cine.kspace, _sense(cine, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.ones((8, 8), np.complex64)}, TypeError, "real magnitude"),
        ({"image": [[1.0, 2.0]]}, TypeError, "numpy array"),
        ({"image": -np.ones((8, 8))}, ValueError, "non-negative"),
        ({"image": np.full((8, 8), np.nan)}, ValueError, "NaN"),
        ({"image": np.ones((8, 8, 8, 8))}, ValueError, "axes"),
        ({"image": np.ones((8, 8)), "fft_ndim": 3}, ValueError, "axes"),
        ({"fft_ndim": 1}, ValueError, "fft_ndim"),
        ({"n_coils": 0}, ValueError, "n_coils"),
        ({"rng": 3}, TypeError, "Generator"),
        ({"snr_db": float("inf")}, ValueError, "snr_db"),
        ({"phase_strength": float("nan")}, ValueError, "phase_strength"),
        ({"image": np.zeros((8, 8))}, ValueError, "all-zero"),
        ({"maps": np.ones((4, 8, 8))}, TypeError, "complex"),
        ({"maps": np.ones((3, 8, 8), np.complex64)}, ValueError, "maps must have shape"),
        ({"maps": np.full((4, 8, 8), np.nan, np.complex64)}, ValueError, "NaN"),
    ],
)
def test_errors(kwargs, error, match):
    args = {"image": np.ones((8, 8)), "n_coils": 4, "fft_ndim": 2}
    args["rng"] = np.random.default_rng(0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        simulate_multicoil(**args)
