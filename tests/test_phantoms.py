"""Phantoms (2D head, 3D head, cine heart) and real anatomy slices/slabs from NIfTI volumes."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gleam_mri.physics.anatomy import anatomy_slabs, anatomy_slices, load_magnitude_volume
from gleam_mri.physics.phantoms import cine_phantom, phantom_2d, phantom_3d


def _check_magnitude(img: np.ndarray, shape: tuple[int, ...]) -> None:
    assert img.shape == shape
    assert img.dtype == np.float32
    assert np.all(np.isfinite(img))
    assert img.min() >= 0.0
    assert 0.99 <= img.max() <= 1.0


def _textured_fraction(img: np.ndarray) -> float:
    """Fraction of object pixels that differ from their 3x3 median (0 for flat regions)."""
    body = img > 0
    return float(np.mean(np.abs(img - ndimage.median_filter(img, 3))[body] > 2e-3))


def _ellipse_phantom(shape: tuple[int, int]) -> np.ndarray:
    """A piecewise-constant reference (Shepp-Logan-like ellipses)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    y, x = (y - shape[0] // 2) / (shape[0] / 2), (x - shape[1] // 2) / (shape[1] / 2)
    img = np.zeros(shape, np.float32)
    ellipses = [(0, 0, 0.85, 0.7, 1.0), (0, 0, 0.8, 0.65, -0.6), (-0.1, 0.1, 0.2, 0.1, 0.3)]
    for cy, cx, ay, ax, v in ellipses:
        img[((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 < 1] += v
    return img


@pytest.mark.parametrize("shape", [(128, 128), (65, 97)])
def test_phantom_2d_shape_range_background(shape: tuple[int, int], rng: np.random.Generator):
    img = phantom_2d(shape, rng)
    _check_magnitude(img, shape)
    assert img[0, 0] == img[0, -1] == img[-1, 0] == img[-1, -1] == 0.0
    assert 0.1 < np.mean(img == 0) < 0.8  # zero background, a sizeable object


def test_phantom_2d_has_texture_and_many_levels():
    flat = _ellipse_phantom((128, 128))
    assert _textured_fraction(flat) < 0.01
    for seed in range(3):
        img = phantom_2d((128, 128), np.random.default_rng(seed))
        assert _textured_fraction(img) > 0.5
        assert np.unique(np.round(img[img > 0], 3)).size > 300


def test_phantom_2d_seeds():
    a = phantom_2d((96, 96), np.random.default_rng(5))
    b = phantom_2d((96, 96), np.random.default_rng(5))
    c = phantom_2d((96, 96), np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.abs(a - c)) > 0.05


def test_phantom_3d_shape_seeds_smooth_z(rng: np.random.Generator):
    vol = phantom_3d((24, 64, 64), rng)
    _check_magnitude(vol, (24, 64, 64))
    assert np.all(vol[:, 0, 0] == 0) and np.all(vol[:, -1, -1] == 0)
    assert np.all(vol.reshape(24, -1).max(axis=1) > 0.5)  # every slice shows the object
    np.testing.assert_array_equal(vol, phantom_3d((24, 64, 64), np.random.default_rng(1234)))
    assert np.mean(np.abs(vol - phantom_3d((24, 64, 64), np.random.default_rng(1)))) > 0.05
    # Structure changes smoothly along Z: smoothed slices differ more the further apart they are.
    smooth = ndimage.gaussian_filter(vol, (0, 2, 2))
    diffs = [np.mean(np.abs(smooth[d:] - smooth[:-d])) for d in (1, 4, 16)]
    assert diffs[0] < diffs[1] < diffs[2]
    assert diffs[0] < 0.5 * diffs[2]
    # The texture is 3D: fine detail along Z too, not a stack of identical slices.
    high_z = vol - ndimage.gaussian_filter1d(vol, 1.5, axis=0)
    high_x = vol - ndimage.gaussian_filter1d(vol, 1.5, axis=2)
    inside = ndimage.binary_erosion(vol > 0.05, iterations=2)
    assert np.mean(high_z[inside] ** 2) > 0.2 * np.mean(high_x[inside] ** 2)
    assert _textured_fraction(vol[12]) > 0.5


def test_phantoms_are_fast():
    def best(fn) -> float:
        times = []
        for _ in range(2):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    rng = np.random.default_rng(0)
    assert best(lambda: phantom_2d((128, 128), rng)) < 0.1
    assert best(lambda: phantom_3d((32, 128, 128), rng)) < 2.0


def test_cine_moves_in_heart_only(rng: np.random.Generator):
    frames = cine_phantom(20, (96, 96), rng)
    _check_magnitude(frames, (20, 96, 96))
    body = frames[0] > 0
    assert np.array_equal(body, (frames > 0).any(axis=0))  # the body outline is static
    moving = np.ptp(frames, axis=0) > 0
    assert moving.any() and np.ptp(frames, axis=0).max() > 0.3  # the heart beats
    assert moving.sum() < 0.2 * body.sum()  # the surroundings are exactly static
    rows, cols = np.nonzero(moving)
    assert np.ptp(rows) < 0.4 * 96 and np.ptp(cols) < 0.4 * 96  # a compact heart region
    # Blood (bright) is smallest in end-systole, about 30 % into the cycle, largest at t = 0.
    signal = frames[:, moving].sum(axis=1)
    assert 4 <= int(np.argmin(signal)) <= 8
    assert signal[0] == pytest.approx(signal.max())


def test_cine_beats_and_seeds():
    two = cine_phantom(12, (64, 64), np.random.default_rng(3), n_beats=2)
    np.testing.assert_allclose(two[:6], two[6:], atol=1e-6)  # two identical cycles
    assert np.ptp(two[:6], axis=0).max() > 0.1
    np.testing.assert_array_equal(two, cine_phantom(12, (64, 64), np.random.default_rng(3), 2))
    other = cine_phantom(12, (64, 64), np.random.default_rng(4), n_beats=2)
    assert np.mean(np.abs(two - other)) > 0.02


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: phantom_2d((64,), r), ValueError, "2 ints"),
        (lambda r: phantom_2d((64.0, 64.0), r), ValueError, "2 ints"),
        (lambda r: phantom_2d((4, 64), r), ValueError, ">= 8"),
        (lambda r: phantom_3d((64, 64), r), ValueError, "3 ints"),
        (lambda r: phantom_3d((0, 64, 64), r), ValueError, "positive"),
        (lambda r: phantom_2d((64, 64), 0), TypeError, "Generator"),
        (lambda r: cine_phantom(0, (64, 64), r), ValueError, "n_frames"),
        (lambda r: cine_phantom(4, (64, 64), r, n_beats=0), ValueError, "n_beats"),
        (lambda r: cine_phantom(4, (64, 64, 2), r), ValueError, "2 ints"),
    ],
)
def test_phantom_errors(call, error, match, rng: np.random.Generator):
    with pytest.raises(error, match=match):
        call(rng)


# ---------------------------------------------------------------- anatomy from NIfTI volumes


@functools.lru_cache(maxsize=1)
def _colin(path: Path) -> np.ndarray:
    return load_magnitude_volume(path)


def _write(tmp_path: Path, name: str, data: np.ndarray) -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _blob_volume() -> np.ndarray:
    """A small ellipsoidal 'head' (X, Y, Z) = (30, 36, 28) with an intensity ramp."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (30, 36, 28)], indexing="ij")
    inside = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.7) ** 2 < 1
    return (inside * (100 + 50 * x)).astype(np.float32)


def test_colin27_volume(shared_data: Path):
    vol = _colin(shared_data / "colin27_t1.nii.gz")
    assert vol.shape == (181, 217, 181)
    assert vol.dtype == np.float32
    assert vol.min() == 0.0 and vol.max() == 1.0
    assert 0.0005 < np.mean(vol == 1.0) < 0.01  # the top ~0.1 % of the head is clipped


def test_colin27_slices_and_slabs(shared_data: Path):
    vol = _colin(shared_data / "colin27_t1.nii.gz")
    slices = anatomy_slices(vol, 4, (96, 80), np.random.default_rng(0))
    assert slices.shape == (4, 96, 80) and slices.dtype == np.float32
    assert slices.min() >= 0 and slices.max() <= 1
    assert np.all((slices > 0.1).mean(axis=(1, 2)) > 0.3)  # central, non-empty slices
    assert np.all(slices.reshape(4, -1).max(axis=1) > 0.5)
    np.testing.assert_array_equal(
        slices, anatomy_slices(vol, 4, (96, 80), np.random.default_rng(0))
    )
    assert not np.array_equal(slices, anatomy_slices(vol, 4, (96, 80), np.random.default_rng(1)))
    sagittal = anatomy_slices(vol, 2, (64, 64), np.random.default_rng(0), axis=0)
    assert sagittal.shape == (2, 64, 64) and np.all((sagittal > 0.1).mean(axis=(1, 2)) > 0.3)
    slabs = anatomy_slabs(vol, 2, (8, 64, 64), np.random.default_rng(0))
    assert slabs.shape == (2, 8, 64, 64) and slabs.dtype == np.float32
    assert np.all((slabs > 0.1).mean(axis=(2, 3)) > 0.2)


def test_synthetic_nifti_load_and_resample(tmp_path: Path):
    data = _blob_volume()
    vol = load_magnitude_volume(_write(tmp_path, "blob.nii.gz", data))
    assert vol.shape == data.shape and vol.dtype == np.float32
    np.testing.assert_allclose(vol, np.clip(data / np.quantile(data[data > 0], 0.999), 0, 1))
    # A trailing singleton axis is accepted; NaN becomes 0.
    data4 = data[..., None].copy()
    data4[0, 0, 0, 0] = np.nan
    np.testing.assert_allclose(load_magnitude_volume(_write(tmp_path, "b4.nii", data4)), vol)
    for axis in (0, 1, 2, -1):
        out = anatomy_slices(vol, 3, (40, 24), np.random.default_rng(0), axis=axis)
        assert out.shape == (3, 40, 24) and np.all(out.reshape(3, -1).max(axis=1) > 0.5)
    many = anatomy_slices(vol, 50, (16, 16), np.random.default_rng(0))  # more than candidates
    assert many.shape == (50, 16, 16)
    slab = anatomy_slabs(vol, 2, (40, 32, 32), np.random.default_rng(0))  # thicker than object
    assert slab.shape == (2, 40, 32, 32)
    assert slab[:, 0].max() == 0 and slab[:, 20].max() > 0.5  # centred with zero padding


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("missing.nii", None, FileNotFoundError, "not found"),
        ("text.nii", b"definitely not a NIfTI header " * 30, ValueError, "cannot read"),
        ("noise.nii.gz", bytes(range(256)) * 4, ValueError, "cannot read"),
    ],
)
def test_load_bad_files(tmp_path: Path, name: str, content: bytes | None, error, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match) as info:
        load_magnitude_volume(path)
    assert name in str(info.value)


def test_load_truncated_wrong_dims_and_empty(tmp_path: Path):
    full = _write(tmp_path, "full.nii", _blob_volume()).read_bytes()
    (tmp_path / "cut.nii").write_bytes(full[: len(full) // 3])
    with pytest.raises(ValueError, match=r"cut\.nii"):
        load_magnitude_volume(tmp_path / "cut.nii")
    with pytest.raises(ValueError, match="2D image"):
        load_magnitude_volume(_write(tmp_path, "flat.nii", np.ones((8, 9), np.float32)))
    with pytest.raises(ValueError, match="4D image"):
        load_magnitude_volume(_write(tmp_path, "t.nii", np.ones((8, 9, 4, 2), np.float32)))
    with pytest.raises(ValueError, match="all zero"):
        load_magnitude_volume(_write(tmp_path, "zero.nii", np.zeros((8, 9, 4), np.float32)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda v, r: anatomy_slices(v[0], 2, (16, 16), r), ValueError, "3D"),
        (lambda v, r: anatomy_slices(v, 0, (16, 16), r), ValueError, "n must"),
        (lambda v, r: anatomy_slices(v, 2, (16,), r), ValueError, "shape"),
        (lambda v, r: anatomy_slices(v, 2, (16, 16), r, axis=3), ValueError, "axis"),
        (lambda v, r: anatomy_slices(v, 2, (16, 16), None), TypeError, "Generator"),
        (lambda v, r: anatomy_slices(0 * v, 2, (16, 16), r), ValueError, "foreground"),
        (lambda v, r: anatomy_slabs(v, 2, (16, 16), r), ValueError, "shape"),
        (lambda v, r: anatomy_slabs(v, 2, (4, 0, 16), r), ValueError, "shape"),
    ],
)
def test_anatomy_argument_errors(call, error, match, rng: np.random.Generator):
    vol = _blob_volume() / 150
    with pytest.raises(error, match=match):
        call(vol, rng)
