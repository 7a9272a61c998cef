"""ISMRMRD raw-data reader: files written by the ``ismrmrd`` package's own writer (independent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw
from gleam_mri.fft import fftnc, ifftnc

ismrmrd = pytest.importorskip("ismrmrd")
xsd = pytest.importorskip("ismrmrd.xsd")


def _limit(maximum: int, center: int, minimum: int = 0):
    return xsd.limitType(minimum=minimum, maximum=maximum, center=center)


def _header(enc, recon=None, **limits) -> str:
    recon = enc if recon is None else recon

    def space(size):
        return xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=size[0], y=size[1], z=size[2]),
            fieldOfView_mm=xsd.fieldOfViewMm(x=float(size[0]), y=float(size[1]), z=5.0),
        )

    encoding = xsd.encodingType(
        encodedSpace=space(enc),
        reconSpace=space(recon),
        encodingLimits=xsd.encodingLimitsType(**limits),
        trajectory=xsd.trajectoryType.CARTESIAN,
    )
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63500000)
    )
    header.encoding.append(encoding)
    return xsd.ToXML(header)


def _write(path: Path, xml: str | None, acquisitions: list[tuple[np.ndarray, dict]]) -> Path:
    """``acquisitions``: (data (C, n) complex64, fields: idx counters, flags (bits), ...)."""
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    if xml is not None:
        dset.write_xml_header(xml)
    for data, fields in acquisitions:
        fields = dict(fields)
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, np.complex64))
        for bit in fields.pop("flags", ()):
            acq.set_flag(bit)
        for name in ("center_sample", "discard_pre", "discard_post"):
            if name in fields:
                setattr(acq, name, fields.pop(name))
        for name, value in fields.items():
            setattr(acq.idx, name, value)
        dset.append_acquisition(acq)
    dset.close()
    return path


def _random(rng, shape) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _noise(rng, n_coils: int, n: int) -> tuple[np.ndarray, dict]:
    return 100 * _random(rng, (n_coils, n)), {"flags": [ismrmrd.ACQ_IS_NOISE_MEASUREMENT]}


def test_multislice_2d_with_noise_scans(tmp_path, rng):
    s, c, x, y = 2, 3, 8, 7  # odd W: centre 3 = 7 // 2
    truth = _random(rng, (s, c, x, y))
    acqs = [_noise(rng, c, x), _noise(rng, c, x)]
    order = [(sl, ky) for sl in range(s) for ky in range(y)]
    for k in rng.permutation(len(order)):
        sl, ky = order[k]
        acqs.append((truth[sl, :, :, ky], {"kspace_encode_step_1": ky, "slice": sl}))
    acqs.insert(5, _noise(rng, c, x))
    xml = _header((x, y, 1), kspace_encoding_step_1=_limit(y - 1, 3), slice=_limit(s - 1, 0))
    raw = read_ismrmrd_raw(_write(tmp_path / "ms.h5", xml, acqs))
    assert raw.kind == "2d"
    assert raw.kspace.dtype == np.complex64 and raw.kspace.shape == (s, c, x, y)
    np.testing.assert_array_equal(raw.kspace, truth)
    assert raw.mask.shape == (s, 1, 1, y) and raw.mask.all()
    assert raw.header["n_noise"] == 3 and raw.header["n_skipped"] == 3


def test_3d_two_phase_encodings(tmp_path, rng):
    c, z, x, y = 2, 4, 6, 5
    truth = _random(rng, (1, c, z, x, y))
    acqs = [
        (truth[0, :, kz, :, ky], {"kspace_encode_step_1": ky, "kspace_encode_step_2": kz})
        for kz in range(z)
        for ky in range(y)
    ]
    xml = _header(
        (x, y, z), kspace_encoding_step_1=_limit(y - 1, 2), kspace_encoding_step_2=_limit(z - 1, 2)
    )
    raw = read_ismrmrd_raw(_write(tmp_path / "3d.h5", xml, acqs))
    assert raw.kind == "3d" and raw.kspace.shape == (1, c, z, x, y)
    np.testing.assert_array_equal(raw.kspace, truth)
    assert raw.mask.shape == (1, 1, z, 1, y)


def test_cine_phases_and_slices(tmp_path, rng):
    s, c, t, x, y = 2, 2, 3, 6, 4
    truth = _random(rng, (s, c, t, x, y))
    acqs = [
        (truth[sl, :, ph, :, ky], {"kspace_encode_step_1": ky, "slice": sl, "phase": ph})
        for sl in range(s)
        for ph in range(t)
        for ky in range(y)
    ]
    xml = _header((x, y, 1), kspace_encoding_step_1=_limit(y - 1, 2), phase=_limit(t - 1, 0))
    raw = read_ismrmrd_raw(_write(tmp_path / "cine.h5", xml, acqs))
    assert raw.kind == "cine" and raw.kspace.shape == (s, c, t, x, y)
    np.testing.assert_array_equal(raw.kspace, truth)


def test_partial_fourier_zero_filled_and_to_fastmri(tmp_path, rng):
    c, x, y = 2, 6, 8
    truth = _random(rng, (1, c, x, y))
    # lines 0..5 acquired, k-space centre at line 2: positions 2..7, the first two are missing
    acqs = [(truth[0, :, :, ky + 2], {"kspace_encode_step_1": ky}) for ky in range(6)]
    xml = _header((x, y, 1), kspace_encoding_step_1=_limit(5, 2))
    raw = read_ismrmrd_raw(_write(tmp_path / "pf.h5", xml, acqs))
    np.testing.assert_array_equal(raw.kspace[..., 2:], truth[..., 2:])
    assert not raw.kspace[..., :2].any()
    assert raw.mask[0, 0, 0].tolist() == [False, False] + [True] * 6
    vol = read_fastmri(raw.to_fastmri(tmp_path / "pf_fastmri.h5"))
    np.testing.assert_array_equal(vol.kspace, raw.kspace)
    assert vol.reconstruction_rss is None  # not fully sampled
    assert vol.mask.tolist() == [0, 0] + [1] * 6
    assert vol.header["enc_limits_center"] == 2


def test_averages_mean_or_kept(tmp_path, rng):
    c, x, y = 2, 4, 4
    truth = _random(rng, (2, 1, c, x, y))  # (averages, slices, ...)
    acqs = [
        (truth[a, 0, :, :, ky], {"kspace_encode_step_1": ky, "average": a})
        for a in range(2)
        for ky in range(y)
    ]
    path = _write(tmp_path / "avg.h5", _header((x, y, 1), average=_limit(1, 0)), acqs)
    mean = read_ismrmrd_raw(path)
    np.testing.assert_allclose(mean.kspace, truth.mean(axis=0), rtol=1e-6, atol=1e-6)
    kept = read_ismrmrd_raw(path, average=False)
    assert kept.averages_kept and kept.kspace.shape == (2, 1, c, x, y)
    np.testing.assert_array_equal(kept.kspace, truth)
    with pytest.raises(FastMRIFormatError, match="averages"):
        kept.to_fastmri(tmp_path / "out.h5")


def test_readout_oversampling_removed(tmp_path, rng):
    c, x, y = 2, 8, 6
    image = np.zeros((1, c, 2 * x, y), np.complex64)  # object inside the central half FOV
    image[:, :, x // 2 : x // 2 + x] = _random(rng, (1, c, x, y))
    kspace = fftnc(torch.from_numpy(image).transpose(-1, -2), 2).transpose(-1, -2).numpy()
    acqs = [(kspace[0, :, :, ky], {"kspace_encode_step_1": ky}) for ky in range(y)]
    xml = _header((2 * x, y, 1), (x, y, 1), kspace_encoding_step_1=_limit(y - 1, 3))
    raw = read_ismrmrd_raw(_write(tmp_path / "os.h5", xml, acqs))
    assert raw.header["oversampling_removed"] and raw.kspace.shape == (1, c, x, y)
    back = ifftnc(torch.from_numpy(raw.kspace), 2).numpy()
    np.testing.assert_allclose(back, image[:, :, x // 2 : x // 2 + x], atol=1e-5)
    vol = read_fastmri(raw.to_fastmri(tmp_path / "os_fastmri.h5"))
    assert vol.header["encoding_size"] == (x, y, 1)
    expected_rss = np.sqrt((np.abs(back) ** 2).sum(axis=1))
    np.testing.assert_allclose(vol.reconstruction_rss, expected_rss, rtol=1e-4, atol=1e-5)
    kept = read_ismrmrd_raw(tmp_path / "os.h5", remove_oversampling=False)
    np.testing.assert_array_equal(kept.kspace, kspace)


def test_asymmetric_echo_and_reversed_lines(tmp_path, rng):
    c, x, y = 1, 8, 2
    truth = _random(rng, (1, c, x, y))
    truth[..., :2, :] = 0  # asymmetric echo: first two readout samples not acquired
    acqs = [
        (truth[0, :, 2:, 0], {"kspace_encode_step_1": 0, "center_sample": 2}),
        (
            truth[0, :, 2:, 1][:, ::-1],
            {"kspace_encode_step_1": 1, "center_sample": 3, "flags": [ismrmrd.ACQ_IS_REVERSE]},
        ),
    ]
    raw = read_ismrmrd_raw(_write(tmp_path / "echo.h5", _header((x, y, 1)), acqs))
    np.testing.assert_array_equal(raw.kspace, truth)


def _good_file(tmp_path: Path, rng, name: str, **fields) -> Path:
    data = _random(rng, (1, 4))
    xml = _header((4, 2, 1), kspace_encoding_step_1=_limit(1, 1))
    return _write(tmp_path / name, xml, [(data, {"kspace_encode_step_1": 0, **fields})])


def test_malformed_files(tmp_path, rng):
    with pytest.raises(FastMRIFileNotFoundError, match=r"missing\.h5"):
        read_ismrmrd_raw(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(FastMRIFormatError, match=r"text\.h5.*not an HDF5"):
        read_ismrmrd_raw(tmp_path / "text.h5")
    no_xml = _write(tmp_path / "noxml.h5", None, [(_random(rng, (1, 4)), {})])
    with pytest.raises(FastMRIFormatError, match=r"noxml\.h5.*xml is missing"):
        read_ismrmrd_raw(no_xml)
    no_data = _write(tmp_path / "nodata.h5", _header((4, 2, 1)), [])
    with pytest.raises(FastMRIFormatError, match=r"nodata\.h5.*data is missing"):
        read_ismrmrd_raw(no_data)
    path = _good_file(tmp_path, rng, "f.h5")
    with h5py.File(path, "r+") as hf:
        hf["dataset/xml"][0] = b"<ismrmrdHeader><encoding>"
    with pytest.raises(FastMRIFormatError, match=r"f\.h5.*not well-formed XML"):
        read_ismrmrd_raw(path)
    with pytest.raises(FastMRIFormatError, match=r"g\.h5.*acquisition 0 .*outside the encoding"):
        read_ismrmrd_raw(_good_file(tmp_path, rng, "g.h5", kspace_encode_step_1=2))
    noise_only = _good_file(tmp_path, rng, "n.h5", flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    with pytest.raises(FastMRIFormatError, match=r"n\.h5.*no image acquisitions"):
        read_ismrmrd_raw(noise_only)


SHEPP_LOGAN = shutil.which("ismrmrd_generate_cartesian_shepp_logan")


@pytest.mark.skipif(SHEPP_LOGAN is None, reason="ismrmrd-tools is not installed")
def test_ismrmrd_tools_shepp_logan(tmp_path):
    path = tmp_path / "sl.h5"
    cmd = [SHEPP_LOGAN, "-m", "32", "-c", "4", "-n", "0", "-r", "2", "-C", "-o", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    raw = read_ismrmrd_raw(path)  # repetition 0; the noise calibration scan is skipped
    assert raw.kspace.shape == (1, 4, 32, 32) and raw.mask.all()
    assert raw.header["oversampling_removed"] and raw.header["n_noise"] == 1
    with h5py.File(path, "r") as hf:
        ref = hf["dataset/coil_images"][0]  # (C, y, 2x) with readout oversampling
    ref = (ref["real"] + 1j * ref["imag"])[..., 16:48].swapaxes(-1, -2)  # (C, x, y), recon FOV
    image = ifftnc(torch.from_numpy(raw.kspace[0]), 2).numpy()
    np.testing.assert_allclose(image, ref, atol=1e-4 * np.abs(ref).max())
