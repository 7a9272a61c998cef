"""Siemens twix reader on the real example files in ../shared/data/twix (skipped without them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.fft import ifftnc

pytest.importorskip("twixtools")
from gleam_mri.data.twix import read_twix


def _rss(kspace: np.ndarray) -> np.ndarray:
    return ifftnc(torch.from_numpy(kspace), 2).abs().pow(2).sum(dim=1).sqrt().numpy()


def test_gre_shape_and_phantom_image(shared_data, tmp_path):
    raw = read_twix(shared_data / "twix" / "gre.dat")
    assert raw.kind == "2d" and raw.kspace.dtype == np.complex64
    assert raw.kspace.shape == (1, 2, 160, 160)  # 2 coils, 320 -> 160 readout, 160 lines
    assert raw.header["samples_per_line"] == 320 and raw.header["oversampling_removed"]
    assert raw.header["center_line"] == 80 and raw.mask.all()
    assert np.isfinite(raw.kspace).all() and np.abs(raw.kspace).min(axis=-2).all()
    # the k-space peak (DC) sits at the centre of both axes
    peak = np.unravel_index(np.abs(raw.kspace[0, 0]).argmax(), (160, 160))
    assert abs(peak[0] - 80) <= 2 and abs(peak[1] - 80) <= 2
    image = _rss(raw.kspace)[0]
    # a phantom: bright disc in the middle, dark background in the corners
    centre, corners = image[60:100, 90:110].mean(), image[:12, :12].mean()
    assert centre > 5 * corners
    raw_os = read_twix(shared_data / "twix" / "gre.dat", remove_oversampling=False)
    assert raw_os.kspace.shape == (1, 2, 320, 160)
    # the oversampled image, cropped to the central half FOV, is the same image
    np.testing.assert_allclose(
        _rss(raw_os.kspace)[0, 80:240], image, rtol=1e-3, atol=1e-3 * image.max()
    )
    vol = read_fastmri(raw.to_fastmri(tmp_path / "gre.h5"))
    np.testing.assert_array_equal(vol.kspace, raw.kspace)
    np.testing.assert_allclose(vol.reconstruction_rss[0], image, rtol=1e-4, atol=1e-6 * image.max())


def test_epi_reads_raw_lines_with_a_warning(shared_data):
    raw = read_twix(shared_data / "twix" / "epi.dat")
    assert raw.kspace.shape == (1, 2, 80, 80) and np.isfinite(raw.kspace).all()
    assert raw.header["n_skipped"] == 3  # the three phase-correction navigators
    assert any("phase correction" in note for note in raw.header["warnings"])


def test_non_twix_files(tmp_path):
    with pytest.raises(FastMRIFileNotFoundError, match=r"absent\.dat"):
        read_twix(tmp_path / "absent.dat")
    text = tmp_path / "text.dat"
    text.write_bytes(b"hello world" * 100)
    with pytest.raises(FastMRIFormatError, match=r"text\.dat: not a Siemens twix file"):
        read_twix(text)
    tiny = tmp_path / "tiny.dat"
    tiny.write_bytes(b"\0\0")
    with pytest.raises(FastMRIFormatError, match=r"tiny\.dat.*too short"):
        read_twix(tiny)


def test_truncated_twix(shared_data, tmp_path):
    cut = tmp_path / "cut.dat"
    cut.write_bytes((shared_data / "twix" / "gre.dat").read_bytes()[:20000])
    with pytest.raises(FastMRIFormatError, match=r"cut\.dat: not a readable Siemens twix"):
        read_twix(cut)
