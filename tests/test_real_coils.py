"""Coil maps from real k-space and measured noise levels (gleam_mri.physics.real_coils).

Tolerances of the noise measurement, measured on 12 colin27 slices at 128 x 128 with 8 perturbed
real coils (SNR 10-40 dB): fully sampled ("background" method) sigma within 1 % and SNR within
0.1 dB; undersampled ("corners") within 0.5 dB at 10 dB, but sigma over-estimated by up to 10 %
at 20 dB and 3x at 40 dB (signal left in the k-space corners: an upper bound on sigma). The tests
below use 64 x 64 phantoms (fewer noise samples: about 2 % statistical error per estimate, hence
5 % / 0.3 dB fully sampled; sharper content at that size leaves more signal in the corners).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from gleam_mri import cli
from gleam_mri.data import synthetic
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.fft import centred_fft
from gleam_mri.physics import real_coils as rc
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.physics.simulate import simulate_multicoil


@pytest.fixture(scope="module")
def field() -> rc.CoilField:
    """A smooth field fitted to 8 birdcage maps inside a disc of a 48 x 40 grid."""
    maps = birdcage_maps(8, (48, 40)).numpy()
    return rc.fit_coil_field(maps, _disc((48, 40), 0.8), source="birdcage")


def _disc(shape: tuple[int, ...], radius: float = 0.8) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[-2:]], indexing="ij")
    disc = grids[0] ** 2 + grids[1] ** 2 < radius**2
    return np.broadcast_to(disc, shape).copy()


def _roughness(maps: np.ndarray, support: np.ndarray) -> float:
    """Mean in-plane finite difference of the maps over their mean magnitude, inside the eroded
    support (per pixel)."""
    inner = ndimage.binary_erosion(support, iterations=2)[..., 1:, 1:]
    dh, dw = np.diff(maps, axis=-2)[..., :, 1:], np.diff(maps, axis=-1)[..., 1:, :]
    grad = np.sqrt(np.abs(dh) ** 2 + np.abs(dw) ** 2)
    return float(grad[:, inner].mean() / np.abs(maps[..., 1:, 1:][:, inner]).mean())


def test_fit_reproduces_smooth_maps(field: rc.CoilField):
    assert field.n_coils == 8 and field.residual < 0.01
    inside = _disc((48, 40), 0.8)  # the support of the fit: both align to its bounding box
    maps = rc.real_coil_maps(field, 8, (48, 40), np.random.default_rng(0), inside, perturb=False)
    reference = birdcage_maps(8, (48, 40)).numpy()
    error = np.abs(maps - reference)[:, inside].max()
    assert error < 0.02, error  # the maps reach 0.8 inside the disc (0.011 measured)


@pytest.mark.parametrize("shape", [(64, 56), (6, 32, 24)], ids=["2d", "3d"])
def test_maps_normalised_on_support_and_zero_outside(field: rc.CoilField, shape):
    support = _disc(shape)
    maps = rc.real_coil_maps(field, 5, shape, np.random.default_rng(3), support=support)
    assert maps.shape == (5, *shape) and maps.dtype == np.complex64
    energy = (np.abs(maps) ** 2).sum(axis=0)
    np.testing.assert_allclose(energy[support], 1.0, atol=1e-5)
    assert not np.any(maps[:, ~support])
    # without a support the maps are normalised over the whole grid
    whole = rc.real_coil_maps(field, 8, shape, np.random.default_rng(3))
    np.testing.assert_allclose((np.abs(whole) ** 2).sum(axis=0), 1.0, atol=1e-5)


def test_perturbation_differs_per_seed_and_stays_smooth(field: rc.CoilField):
    shape, support = (64, 64), _disc((64, 64))
    draw = [
        rc.real_coil_maps(field, 8, shape, np.random.default_rng(s), support) for s in (1, 1, 2)
    ]
    np.testing.assert_array_equal(draw[0], draw[1])
    # compare coil-permutation and phase invariant quantities: the sorted magnitudes per pixel
    a, b = (np.sort(np.abs(m), axis=0) for m in (draw[0], draw[2]))
    assert np.abs(a - b)[:, support].mean() > 0.02
    plain = rc.real_coil_maps(field, 8, shape, np.random.default_rng(0), support, perturb=False)
    # as smooth as the unperturbed maps (scaling by 0.9 roughens them by at most about 1/0.9)
    assert max(_roughness(m, support) for m in draw) < 1.5 * _roughness(plain, support) < 0.15


def test_3d_maps_vary_smoothly_along_z(field: rc.CoilField):
    shape = (12, 32, 32)
    support = _disc(shape)
    maps = rc.real_coil_maps(field, 8, shape, np.random.default_rng(4), support=support)
    inside = support[0]
    step = np.abs(np.diff(maps, axis=1))[:, :, inside].mean()
    span = np.abs(maps[:, -1] - maps[:, 0])[:, inside].mean()
    assert span > 0.02 and step < 0.25 * span  # varies over Z, a little per slice
    flat = rc.real_coil_maps(field, 8, shape, np.random.default_rng(4), support, perturb=False)
    np.testing.assert_allclose(flat, np.repeat(flat[:, :1], 12, axis=1))  # extrusion


def test_bad_requests(field: rc.CoilField, tmp_path):
    with pytest.raises(ValueError, match=r"n_coils must be in 1\.\.8"):
        rc.real_coil_maps(field, 9, (16, 16), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"support shape"):
        rc.real_coil_maps(field, 4, (16, 16), np.random.default_rng(0), support=_disc((8, 8)))
    np.save(tmp_path / "real.npy", np.ones((4, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"complex k-space"):
        synthetic.load_real_kspace(tmp_path / "real.npy")
    with pytest.raises(FileNotFoundError):
        synthetic.load_real_kspace(tmp_path / "missing.npy")


def _acquisition(snr_db: float, seed: int, shape=(64, 64)):
    rng = np.random.default_rng(seed)
    image = np.pad(phantom_2d((shape[0], shape[1] - 16), rng), ((0, 0), (8, 8)))
    return simulate_multicoil(image, 8, 2, rng, snr_db=snr_db)


@pytest.mark.parametrize("snr_db", [10.0, 25.0, 40.0])
def test_measured_snr_of_a_fully_sampled_acquisition(snr_db):
    for seed in range(3):
        acq = _acquisition(snr_db, seed)
        noise = rc.measure_noise(acq.kspace)
        assert noise.method == "background"
        assert noise.sigma == pytest.approx(acq.noise_std, rel=0.05)
        assert noise.snr_db == pytest.approx(snr_db, abs=0.3)


def test_readout_filtered_noise_gives_its_mean_variance():
    """A readout filter darkens the noise near the edges of H in image space (as in the real
    brain); the k-space noise std of the project's SNR is the root-mean of that profile."""
    acq = _acquisition(None, 5)
    rng = np.random.default_rng(6)
    sigma = 0.02 * np.abs(acq.kspace).max()
    parts = rng.standard_normal((2, *acq.kspace.shape)) * (sigma / np.sqrt(2))
    profile = np.cos(np.linspace(-1.2, 1.2, 64))[:, None]  # amplitude along H (image space)
    image_noise = profile * centred_fft(parts[0] + 1j * parts[1], (1, 2), inverse=True)
    measured = rc.measure_noise(acq.kspace + centred_fft(image_noise, (1, 2))).sigma
    expected = sigma * math.sqrt(np.mean(profile**2))
    assert measured == pytest.approx(expected, rel=0.05)


def test_undersampled_scan_uses_the_corners():
    acq = _acquisition(10.0, 7)
    mask = np.zeros(64, dtype=bool)
    mask[::3] = mask[26:38] = True
    noise = rc.measure_noise(acq.kspace * mask)
    assert noise.method == "corners"
    # the phantom's edges and texture leave signal in the corners of a 64 x 64 k-space: sigma
    # comes out 17-28 % high over seeds 0-3 (1.2-2.2 dB low in SNR)
    assert 1.0 < noise.sigma / acq.noise_std < 1.35 and 7.0 < noise.snr_db < 10.3
    clean = _acquisition(40.0, 7)
    high = rc.measure_noise(clean.kspace * mask)  # biased by signal, but never optimistic
    assert high.sigma > 0.95 * clean.noise_std and high.snr_db < 40.3


def test_simulate_with_coils_from_a_file_and_measured_snr(tmp_path):
    np.save(tmp_path / "scan.npy", _acquisition(20.0, 8).kspace)
    out = tmp_path / "data"
    argv = ["simulate", str(out), "--n", "1", "--slices", "2", "--shape", "32x24"]
    argv += ["--coils", "6", "--coils-from", str(tmp_path / "scan.npy"), "--snr-db", "measured"]
    assert cli.main([*argv, "--quiet"]) == 0
    record = json.loads((out / "dataset.json").read_text())
    assert record["snr_db_measured"]["snr_db"] == pytest.approx(20.0, abs=0.3)
    vol = read_fastmri(next(out.glob("*/*.h5")))
    assert vol.kspace.shape == vol.maps.shape == (2, 6, 32, 24)
    energy = (np.abs(vol.maps) ** 2).sum(axis=1)
    assert np.all((np.abs(energy - 1) < 1e-5) | (energy == 0)) and energy.mean() > 0.3


def test_spec_and_anatomy_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"measures the noise of coils_from"):
        synthetic.SyntheticSpec(snr_db="measured")
    with pytest.raises(ValueError, match=r"a number or 'measured'"):
        synthetic.SyntheticSpec(snr_db="loud", coils_from="x.npy")
    assert cli.main(["simulate", "unused", "--snr", "loud"]) == 2
    # a packaged file that moved: found through the module attribute naming it, else an error
    monkeypatch.setitem(synthetic.PACKAGED_ANATOMY, "moved", ("numpy", "gone", "numpy:__file__"))
    assert synthetic.resolve_anatomy("moved").name == "__init__.py"
    monkeypatch.setitem(synthetic.PACKAGED_ANATOMY, "lost", ("numpy", "gone", "numpy:nothing"))
    with pytest.raises(ValueError, match=r"numpy has no gone"):
        synthetic.resolve_anatomy("lost")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"nilearn package, which is not installed"):
        synthetic.resolve_anatomy("mni152")


def test_mni152_template_ships_with_nilearn():
    pytest.importorskip("nilearn")
    from gleam_mri.physics.anatomy import load_magnitude_volume

    volume = load_magnitude_volume(synthetic.resolve_anatomy("mni152"))
    assert volume.shape == (197, 233, 189) and volume.max() == 1.0


def test_real_brain_coils_and_noise(shared_data):
    brain8 = shared_data / "brain8ch_poisson_R8.npy"
    field = synthetic.coil_field_from_file(brain8)
    assert field.n_coils == 8 and field.residual < 0.1  # ESPIRiT of a noisy scan: a 7 % misfit
    maps = rc.real_coil_maps(field, 8, (128, 128), np.random.default_rng(0))
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(axis=0), 1.0, atol=1e-5)
    undersampled = rc.measure_noise(synthetic.load_real_kspace(brain8))
    assert undersampled.method == "corners" and 15.0 < undersampled.snr_db < 20.0  # 17.6 dB
    flash = synthetic.load_real_kspace(
        shared_data / "real_fullysampled/pulseq_flash2d_brain_16ch.h5"
    )
    assert flash.shape == (16, 128, 128)
    full = rc.measure_noise(flash)
    assert full.method == "background" and 14.0 < full.snr_db < 18.0  # 15.8 dB
    corners = rc.measure_noise(flash * (np.arange(128) % 2 == 0))  # same scan, every 2nd line
    assert corners.sigma > full.sigma  # the corners also hold some signal
