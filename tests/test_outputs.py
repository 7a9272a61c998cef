"""Clinical outputs: NIfTI and DICOM read back with nibabel / pydicom; PNG montage; errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gleam_mri.data.ismrmrd_header import make_ismrmrd_header, parse_ismrmrd_header
from gleam_mri.inference.outputs import (
    voxel_size_from_header,
    write_dicom_series,
    write_nifti,
    write_png,
)

pydicom = pytest.importorskip("pydicom")

VOXEL = (0.5, 0.75, 3.0)  # dx (along W), dy (along H), dz (slices)


def _volume(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.random(shape) * 7.3).astype(np.float32)


def _read_series(paths: list[Path]) -> list:
    return [pydicom.dcmread(p) for p in paths]


def test_voxel_size_from_ismrmrd_header() -> None:
    xml = make_ismrmrd_header(
        (32, 24, 1), recon_size=(16, 12, 1), fov_mm=(160.0, 120.0, 4.5), recon_fov_mm=None
    )
    header = parse_ismrmrd_header(xml)
    # x = readout = H (10 mm / 1), y = phase = W; recon fov defaults to encoded voxel * recon size
    assert voxel_size_from_header(header) == pytest.approx((5.0, 5.0, 4.5))
    header = {"recon_fov_mm": (200.0, 150.0, 30.0), "recon_size": (400, 100, 10)}
    assert voxel_size_from_header(header) == pytest.approx((1.5, 0.5, 3.0))
    with pytest.raises(ValueError, match="field of view"):
        voxel_size_from_header({"recon_fov_mm": None, "recon_size": None})


def test_nifti_2d_affine_shape_and_values(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = _volume(rng, (3, 8, 6))  # (S, H, W)
    path = write_nifti(tmp_path / "v.nii.gz", vol, VOXEL)
    img = nib.load(path)
    assert img.shape == (6, 8, 3)  # (x = W, y = H, z = slices)
    assert img.header.get_zooms() == pytest.approx(VOXEL)
    np.testing.assert_allclose(img.affine, np.diag([-0.5, -0.75, 3.0, 1.0]))
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 2
    np.testing.assert_array_equal(np.asarray(img.dataobj)[4, 7, 2], vol[2, 7, 4])
    np.testing.assert_array_equal(np.transpose(img.get_fdata(), (2, 1, 0)), vol)
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


def test_nifti_3d_stacks_slabs_and_cine_is_4d(tmp_path: Path, rng: np.random.Generator) -> None:
    vol3 = _volume(rng, (2, 3, 8, 6))  # (S, Z, H, W)
    img = nib.load(write_nifti(tmp_path / "a.nii", vol3, VOXEL, kind="3d"))
    assert img.shape == (6, 8, 6)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[:, :, 4].T, vol3[1, 1])
    cine = _volume(rng, (2, 5, 8, 6))  # (S, T, H, W)
    img = nib.load(write_nifti(tmp_path / "c.nii", cine, VOXEL, kind="cine", frame_time_s=0.04))
    assert img.shape == (6, 8, 2, 5)
    assert img.header.get_zooms() == pytest.approx((*VOXEL, 0.04))
    np.testing.assert_array_equal(np.asarray(img.dataobj)[:, :, 1, 3].T, cine[1, 3])


def test_dicom_series_geometry_values_and_uids(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = _volume(rng, (4, 8, 6))
    vol[0, 0, 0] = 0.0
    paths = write_dicom_series(tmp_path / "dcm", vol, VOXEL, "gleam test", patient_name="Doe^J")
    assert [p.name for p in paths] == [f"IM_{i:05d}.dcm" for i in range(1, 5)]
    series = _read_series(paths)
    assert len({ds.StudyInstanceUID for ds in series}) == 1
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.FrameOfReferenceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series}) == 4
    normal = np.cross(*np.reshape(np.asarray(series[0].ImageOrientationPatient, float), (2, 3)))
    along = [float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))) for ds in series]
    np.testing.assert_allclose(np.diff(along), VOXEL[2])  # increasing along the slice normal
    slope = float(series[0].RescaleSlope)
    assert slope == pytest.approx(vol.max() / 65535, rel=1e-6)
    for path in paths:  # a valid Part 10 file: preamble, "DICM", explicit VR little endian
        assert path.read_bytes()[128:132] == b"DICM"
    assert series[0].file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert sorted(p.name for p in (tmp_path / "dcm").iterdir()) == [p.name for p in paths]
    for k, ds in enumerate(series):
        assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.MRImageStorage
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "MR" and ds.SeriesDescription == "gleam test"
        assert str(ds.PatientName) == "Doe^J" and ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.PixelSpacing] == [VOXEL[1], VOXEL[0]]  # [row, column]
        assert float(ds.SliceThickness) == VOXEL[2]
        assert float(ds.RescaleSlope) == slope and float(ds.RescaleIntercept) == 0.0
        assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.shape == (8, 6)
        back = ds.pixel_array * slope
        assert np.abs(back - vol[k]).max() <= slope / 2 * (1 + 1e-5)
    assert series[0].pixel_array[0, 0] == 0 and series[0].pixel_array.max() <= 65535


def test_dicom_and_nifti_describe_the_same_points(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = _volume(rng, (3, 8, 6))
    img = nib.load(write_nifti(tmp_path / "v.nii", vol, VOXEL))
    series = _read_series(write_dicom_series(tmp_path / "d", vol, VOXEL, "s"))
    row, col, k = 5, 2, 2  # a voxel: (row along H, column along W, slice)
    ds = series[k]
    iop = np.asarray(ds.ImageOrientationPatient, float)
    lps = (
        np.asarray(ds.ImagePositionPatient, float)
        + iop[:3] * col * float(ds.PixelSpacing[1])
        + iop[3:] * row * float(ds.PixelSpacing[0])
    )
    ras = img.affine @ np.array([col, row, k, 1.0])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1])


def test_dicom_3d_and_cine(tmp_path: Path, rng: np.random.Generator) -> None:
    vol3 = _volume(rng, (2, 3, 4, 4))
    series = _read_series(write_dicom_series(tmp_path / "a", vol3, VOXEL, "3d", kind="3d"))
    assert len(series) == 6 and series[0].MRAcquisitionType == "3D"
    z = [float(ds.ImagePositionPatient[2]) for ds in series]
    np.testing.assert_allclose(z, np.arange(6) * VOXEL[2])
    slope = float(series[4].RescaleSlope)
    assert np.abs(series[4].pixel_array * slope - vol3[1, 1]).max() <= slope / 2 * (1 + 1e-5)

    cine = _volume(rng, (2, 3, 4, 4))
    paths = write_dicom_series(tmp_path / "c", cine, VOXEL, "cine", kind="cine", frame_time_ms=40)
    series = _read_series(paths)
    assert len(series) == 6 and all(ds.NumberOfTemporalPositions == 3 for ds in series)
    assert [ds.TemporalPositionIdentifier for ds in series] == [1, 2, 3, 1, 2, 3]
    assert [float(ds.TriggerTime) for ds in series[:3]] == [0.0, 40.0, 80.0]
    z = [float(ds.ImagePositionPatient[2]) for ds in series]
    assert z == [0.0, 0.0, 0.0, VOXEL[2], VOXEL[2], VOXEL[2]]


def test_dicom_refuses_to_mix_series(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = _volume(rng, (3, 4, 4))
    write_dicom_series(tmp_path, vol, VOXEL, "first")
    with pytest.raises(FileExistsError, match=r"3 \.dcm files"):
        write_dicom_series(tmp_path, vol[:2], VOXEL, "second")
    paths = write_dicom_series(tmp_path, vol[:2], VOXEL, "second", overwrite=True)
    assert sorted(tmp_path.glob("*.dcm")) == paths


@pytest.mark.parametrize(
    ("volume", "kind", "error", "match"),
    [
        (np.ones((4, 4)), None, ValueError, r"\(S, H, W\)"),
        (np.ones((2, 3, 4, 4)), None, ValueError, "kind='3d' or 'cine'"),
        (np.ones((2, 3, 4, 4)), "2.5d", ValueError, "kind must be"),
        (np.ones((2, 4, 4)), "cine", ValueError, r"\(S, Z\|T, H, W\)"),
        (np.full((2, 4, 4), np.nan), None, ValueError, "NaN"),
        (-np.ones((2, 4, 4)), None, ValueError, "negative"),
        (np.ones((2, 4, 4), np.complex64), None, TypeError, "np.abs"),
    ],
)
def test_bad_volumes(
    tmp_path: Path, volume: np.ndarray, kind: str | None, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        write_nifti(tmp_path / "v.nii", volume, VOXEL, kind=kind)
    with pytest.raises(error, match=match):
        write_dicom_series(tmp_path / "d", volume, VOXEL, "bad", kind=kind)
    assert not list(tmp_path.rglob("*.dcm")) and not list(tmp_path.glob("*.nii"))


def test_bad_voxel_sizes_and_names(tmp_path: Path) -> None:
    vol = np.ones((2, 4, 4), np.float32)
    for voxel in ((1.0, 1.0), (1.0, 0.0, 1.0), (1.0, np.nan, 1.0)):
        with pytest.raises(ValueError, match="voxel_size_mm"):
            write_nifti(tmp_path / "v.nii", vol, voxel)
    with pytest.raises(ValueError, match=r"v\.img.*\.nii"):
        write_nifti(tmp_path / "v.img", vol, VOXEL)


def test_png_montage(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_png(tmp_path / "m.png", _volume(rng, (2, 3, 16, 12)))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "n.png", np.full((2, 4, 4), np.nan))
