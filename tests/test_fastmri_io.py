"""fastMRI HDF5 reader / writer: round trips, ISMRMRD headers, atomic writes, fastMRI's own reader,
files written the way fastMRI's are, and every bad-input case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.fastmri import (
    inspect_fastmri,
    make_ismrmrd_header,
    parse_ismrmrd_header,
    read_fastmri,
    write_fastmri,
)

SHAPES = {"2d": (3, 4, 12, 10), "3d": (2, 3, 4, 8, 6), "cine": (2, 3, 5, 8, 6)}


def cplx(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def volume(rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
    """k-space, maps, a target cropped by 2 pixels in-plane and a phase-encoding mask."""
    shape = SHAPES[kind]
    target_shape = (shape[0], *shape[2:-2], shape[-2] - 2, shape[-1] - 2)
    mask = (rng.random(shape[-1]) < 0.5).astype(np.float32)
    if kind != "2d":
        mask = (rng.random((shape[2], shape[-1])) < 0.5).astype(np.float32)
    return {
        "kspace": cplx(rng, shape),
        "maps": cplx(rng, shape),
        "reconstruction_rss": rng.random(target_shape).astype(np.float32),
        "mask": mask,
    }


@pytest.mark.parametrize("kind", ["2d", "3d", "cine"])
@pytest.mark.parametrize("extras", [(), ("maps", "mask", "reconstruction_rss")])
def test_round_trip(tmp_path: Path, rng: np.random.Generator, kind: str, extras: tuple) -> None:
    arrays = volume(rng, kind)
    given = {k: arrays[k] for k in extras}
    attrs = {"acquisition": "CORPD_FBK", "patient_id": "p01"}
    path = write_fastmri(tmp_path / "v.h5", arrays["kspace"], attrs=attrs, kind=kind, **given)
    vol = read_fastmri(path)
    assert vol.kind == kind and vol.path == path and vol.slices == range(SHAPES[kind][0])
    assert vol.kspace.dtype == np.complex64
    np.testing.assert_array_equal(vol.kspace, arrays["kspace"])
    for name in ("maps", "mask", "reconstruction_rss"):
        got = getattr(vol, name)
        if name in extras:
            np.testing.assert_array_equal(got, arrays[name])
        else:
            assert got is None
    assert vol.attrs["acquisition"] == "CORPD_FBK" and vol.attrs["patient_id"] == "p01"
    assert vol.attrs["gleam_kind"] == kind
    if "reconstruction_rss" in extras:
        target = arrays["reconstruction_rss"]
        assert vol.attrs["max"] == pytest.approx(float(target.max()))
        assert vol.attrs["norm"] == pytest.approx(float(np.linalg.norm(target)))
    shape = SHAPES[kind]
    depth = shape[2] if kind == "3d" else 1
    assert vol.header["encoding_size"] == (shape[-2], shape[-1], depth)
    assert vol.header["n_coils"] == shape[1]
    assert vol.header["acquisition"] == "CORPD_FBK"
    info = inspect_fastmri(path)
    assert (info.kind, info.num_slices, info.kspace_shape) == (kind, shape[0], shape)
    assert info.has_maps == ("maps" in extras) and info.has_mask == ("mask" in extras)
    assert info.has_target == ("reconstruction_rss" in extras)
    assert info.fft_ndim == (3 if kind == "3d" else 2)


def test_torch_input_and_slice_selection(tmp_path: Path, rng: np.random.Generator) -> None:
    arrays = volume(rng, "2d")
    path = write_fastmri(
        tmp_path / "t.h5",
        torch.from_numpy(arrays["kspace"]),
        reconstruction_rss=torch.from_numpy(arrays["reconstruction_rss"]),
        maps=torch.from_numpy(arrays["maps"]),
    )
    one = read_fastmri(path, slices=1)
    assert one.kspace.shape == (1, *SHAPES["2d"][1:]) and one.slices == range(1, 2)
    np.testing.assert_array_equal(one.kspace[0], arrays["kspace"][1])
    np.testing.assert_array_equal(one.maps[0], arrays["maps"][1])
    np.testing.assert_array_equal(one.reconstruction_rss[0], arrays["reconstruction_rss"][1])
    np.testing.assert_array_equal(read_fastmri(path, slices=-1).kspace[0], arrays["kspace"][2])
    np.testing.assert_array_equal(
        read_fastmri(path, slices=slice(1, None)).kspace, arrays["kspace"][1:]
    )
    with pytest.raises(IndexError, match=r"t\.h5.*slice 3 out of range"):
        read_fastmri(path, slices=3)
    with pytest.raises(TypeError, match="slices must be"):
        read_fastmri(path, slices=[0, 1])


def test_inspect_reads_no_array_data(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = volume(rng, "2d")
    path = write_fastmri(tmp_path / "a.h5", arrays["kspace"], maps=arrays["maps"])
    read: list[str] = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, key: object) -> object:
        read.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    info = inspect_fastmri(path)
    assert info.kspace_shape == SHAPES["2d"]
    assert read == ["/ismrmrd_header"]


# ------------------------------------------------------------------------------------- headers


def test_header_round_trip_and_fastmri_query() -> None:
    from fastmri.data.mri_data import et_query

    xml = make_ismrmrd_header(
        (640, 368, 1),
        (320, 320, 1),
        fov_mm=(280.0, 140.0, 4.5),
        acquisition="CORPD_FBK",
        enc_limits_center=180,
        enc_limits_max=365,
        n_coils=15,
    )
    info = parse_ismrmrd_header(xml)
    assert info["encoding_size"] == (640, 368, 1) and info["recon_size"] == (320, 320, 1)
    assert info["encoding_fov_mm"] == (280.0, 140.0, 4.5)
    assert info["recon_fov_mm"] == pytest.approx((140.0, 121.7391, 4.5), rel=1e-5)
    assert (info["enc_limits_min"], info["enc_limits_max"], info["enc_limits_center"]) == (
        0,
        365,
        180,
    )
    assert (info["padding_left"], info["padding_right"]) == (4, 370)
    assert info["n_coils"] == 15 and info["acquisition"] == "CORPD_FBK"
    assert info["trajectory"] == "cartesian"
    root = ET.fromstring(xml)
    assert root.tag == "{http://www.ismrm.org/ISMRMRD}ismrmrdHeader"
    assert et_query(root, ["encoding", "reconSpace", "matrixSize", "y"]) == "320"
    limits = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    assert et_query(root, [*limits, "center"]) == "180"
    assert parse_ismrmrd_header(xml.decode()) == info  # str works too


def test_header_tolerates_missing_optional_fields() -> None:
    xml = (
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><encodedSpace>'
        "<matrixSize><x>8</x><y>6</y><z>1</z></matrixSize></encodedSpace></encoding>"
        "</ismrmrdHeader>"
    )
    info = parse_ismrmrd_header(xml)
    assert info["encoding_size"] == (8, 6, 1)
    assert info["recon_size"] is None and info["enc_limits_center"] is None
    assert info["padding_left"] is None and info["n_coils"] is None


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        (b"<ismrmrdHeader><encoding>", "not well-formed XML"),
        (b"<other/>", "expected <ismrmrdHeader>"),
        (
            b"<ismrmrdHeader><acquisitionSystemInformation><receiverChannels>many"
            b"</receiverChannels></acquisitionSystemInformation></ismrmrdHeader>",
            "receiverChannels is not a number",
        ),
    ],
)
def test_header_malformed(xml: bytes, problem: str) -> None:
    with pytest.raises(FastMRIFormatError, match=problem):
        parse_ismrmrd_header(xml, source="f.h5")


def test_make_header_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="three entries"):
        make_ismrmrd_header((8, 6))
    with pytest.raises(ValueError, match="enc_limits_center"):
        make_ismrmrd_header((8, 6, 1), enc_limits_center=7, enc_limits_max=5)


# ------------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_existing_file(tmp_path: Path, rng: np.random.Generator) -> None:
    arrays = volume(rng, "2d")
    path = write_fastmri(tmp_path / "keep.h5", arrays["kspace"])
    before = path.read_bytes()
    bad = arrays["kspace"].copy()
    bad[1, 0, 2, 3] = np.nan
    with pytest.raises(FastMRIFormatError, match=r"keep\.h5: kspace contains NaN or Inf"):
        write_fastmri(path, bad)
    with pytest.raises(FastMRIFormatError, match=r"maps shape .* != kspace shape"):
        write_fastmri(path, arrays["kspace"], maps=arrays["maps"][:, :2])
    # a failure half-way through writing (after k-space is in the temporary file)
    with pytest.raises(FastMRIFormatError, match="cannot store attr 'bad'"):
        write_fastmri(path, arrays["kspace"] * 2, attrs={"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]  # no temporary files left
    np.testing.assert_array_equal(read_fastmri(path).kspace, arrays["kspace"])


# ------------------------------------------------------------------------- fastMRI compatibility


def test_fastmri_slice_dataset_reads_our_files(tmp_path: Path, rng: np.random.Generator) -> None:
    from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset

    written = {}
    for name, with_mask in (("a.h5", False), ("b.h5", True)):
        arrays = volume(rng, "2d")
        mask = arrays["mask"] if with_mask else None
        target = None if with_mask else arrays["reconstruction_rss"]
        write_fastmri(
            tmp_path / name,
            arrays["kspace"],
            reconstruction_rss=target,
            attrs={"acquisition": "AXT1"},
            mask=mask,
            maps=arrays["maps"],
        )
        written[name] = (arrays["kspace"], target, mask)
    reference = FastMRISliceDataset(tmp_path, challenge="multicoil")
    assert len(reference) == 6
    for kspace_ref, mask_ref, target_ref, attrs, fname, index in reference:
        kspace, target, mask = written[fname]
        np.testing.assert_array_equal(kspace_ref, kspace[index])
        if target is None:
            assert target_ref is None
            np.testing.assert_array_equal(mask_ref, mask)
        else:
            assert mask_ref is None
            np.testing.assert_array_equal(target_ref, target[index])
            assert attrs["max"] == pytest.approx(float(target.max()))
        ours = inspect_fastmri(tmp_path / fname).header
        for key in ("encoding_size", "recon_size", "padding_left", "padding_right"):
            assert attrs[key] == ours[key], key
        assert attrs["encoding_size"] == (12, 10, 1)
        assert (attrs["padding_left"], attrs["padding_right"]) == (0, 10)
        assert attrs["acquisition"] == "AXT1"


def write_like_fastmri(path: Path, kspace: np.ndarray, target: np.ndarray) -> None:
    """A file as fastMRI distributes them: no maps, no gleam attrs, header from its own XML."""
    header = make_ismrmrd_header(
        (kspace.shape[-2], kspace.shape[-1], 1), (*target.shape[-2:], 1), acquisition="CORPD_FBK"
    )
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_rss", data=target)
        hf.create_dataset("ismrmrd_header", data=header)
        hf.attrs["max"] = float(target.max())
        hf.attrs["norm"] = float(np.linalg.norm(target))
        hf.attrs["acquisition"] = "CORPD_FBK"
        hf.attrs["patient_id"] = "abc"


def test_reads_file_written_like_fastmri(tmp_path: Path, rng: np.random.Generator) -> None:
    arrays = volume(rng, "2d")
    path = tmp_path / "file1000001.h5"
    write_like_fastmri(path, arrays["kspace"], arrays["reconstruction_rss"])
    vol = read_fastmri(path)
    assert vol.kind == "2d" and vol.maps is None and vol.mask is None
    np.testing.assert_array_equal(vol.kspace, arrays["kspace"])
    np.testing.assert_array_equal(vol.reconstruction_rss, arrays["reconstruction_rss"])
    assert vol.header["recon_size"] == (10, 8, 1)
    assert vol.attrs["patient_id"] == "abc" and "gleam_kind" not in vol.attrs


# ------------------------------------------------------------------------------------ bad input


def raw_file(path: Path, **datasets: object) -> Path:
    """Write datasets with h5py directly (bypassing the writer's checks)."""
    attrs = datasets.pop("attrs", {})
    with h5py.File(path, "w") as hf:
        for name, data in datasets.items():
            hf.create_dataset(name, data=data)
        hf.attrs.update(attrs)
    return path


def test_missing_garbage_and_truncated_files(tmp_path: Path, rng: np.random.Generator) -> None:
    missing = tmp_path / "missing.h5"
    with pytest.raises(FastMRIFileNotFoundError, match=r"missing\.h5: file not found"):
        read_fastmri(missing)
    with pytest.raises(FileNotFoundError):
        inspect_fastmri(missing)
    with pytest.raises(FastMRIFormatError, match="is a directory"):
        read_fastmri(tmp_path)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(FastMRIFormatError, match=r"garbage\.h5: not a readable HDF5 file"):
        read_fastmri(garbage)
    good = write_fastmri(tmp_path / "good.h5", volume(rng, "2d")["kspace"])
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FastMRIFormatError, match=r"truncated\.h5: not a readable HDF5 file"):
        inspect_fastmri(truncated)


def test_bad_layouts_name_file_and_problem(tmp_path: Path, rng: np.random.Generator) -> None:
    k4 = cplx(rng, (2, 3, 6, 5))
    k5 = cplx(rng, (2, 3, 4, 6, 5))
    header = make_ismrmrd_header((6, 5, 1))
    cases = {
        "no_kspace": ({"reconstruction_rss": np.ones((2, 6, 5))}, "no 'kspace' dataset"),
        "real": ({"kspace": k4.real}, "kspace must be complex"),
        "rank2d": ({"kspace": k5}, r"2d file must be \(slices, coils, H, W\)"),
        "rank3d": ({"kspace": k4, "attrs": {"gleam_kind": "3d"}}, "3d file must be"),
        "rankcine": ({"kspace": k4, "attrs": {"gleam_kind": "cine"}}, "cine file must be"),
        "kind": ({"kspace": k4, "attrs": {"gleam_kind": "4d"}}, "unknown kind '4d'"),
        "maps": ({"kspace": k4, "maps": k4[:, :2]}, "maps shape"),
        "maps_real": ({"kspace": k4, "maps": k4.real}, "maps must be complex"),
        "target_rank": ({"kspace": k4, "reconstruction_rss": np.ones((2, 6))}, "must have rank 3"),
        "target_slices": (
            {"kspace": k4, "reconstruction_rss": np.ones((3, 6, 5))},
            "slice count",
        ),
        "target_frames": (
            {
                "kspace": k5,
                "reconstruction_rss": np.ones((2, 3, 6, 5)),
                "attrs": {"gleam_kind": "3d"},
            },
            "Z/T axis",
        ),
        "mask": ({"kspace": k4, "mask": np.ones(6)}, r"mask shape \(6,\)"),
        "header": ({"kspace": k4, "ismrmrd_header": b"<ismrmrdHeader>"}, "not well-formed XML"),
    }
    for name, (datasets, problem) in cases.items():
        path = raw_file(tmp_path / f"{name}.h5", **datasets)
        for reader in (inspect_fastmri, read_fastmri):
            with pytest.raises(FastMRIFormatError, match=problem) as err:
                reader(path)
            assert f"{name}.h5" in str(err.value), str(err.value)
    ok = raw_file(tmp_path / "no_header.h5", kspace=k4)
    assert read_fastmri(ok).header == {}  # the header is optional for our reader
    assert inspect_fastmri(raw_file(tmp_path / "hdr.h5", kspace=k4, ismrmrd_header=header)).header


def test_non_finite_values_checked_on_slices_read(tmp_path: Path, rng: np.random.Generator) -> None:
    kspace = cplx(rng, (3, 2, 6, 5))
    kspace[2, 1, 0, 0] = np.inf
    path = raw_file(tmp_path / "inf.h5", kspace=kspace)
    assert inspect_fastmri(path).num_slices == 3  # reads no data
    assert read_fastmri(path, slices=slice(0, 2)).kspace.shape == (2, 2, 6, 5)
    problem = r"inf\.h5: kspace contains NaN or Inf.*slices 2\.\.2"
    with pytest.raises(FastMRIFormatError, match=problem):
        read_fastmri(path, slices=2)
    maps = cplx(rng, (3, 2, 6, 5))
    maps[0, 0, 1, 1] = np.nan
    path = raw_file(tmp_path / "nan_maps.h5", kspace=kspace[:2], maps=maps[:2])
    with pytest.raises(FastMRIFormatError, match=r"nan_maps\.h5: maps contains NaN"):
        read_fastmri(path)


def test_writer_rejects_bad_arrays(tmp_path: Path, rng: np.random.Generator) -> None:
    k = cplx(rng, (2, 3, 6, 5))
    path = tmp_path / "w.h5"
    with pytest.raises(FastMRIFormatError, match=r"w\.h5: kspace must be complex"):
        write_fastmri(path, k.real)
    with pytest.raises(FastMRIFormatError, match="3d file must be"):
        write_fastmri(path, k, kind="3d")
    with pytest.raises(FastMRIFormatError, match="unknown kind"):
        write_fastmri(path, k, kind="volume")
    with pytest.raises(FastMRIFormatError, match="only 0 and 1"):
        write_fastmri(path, k, mask=np.full(5, 0.5))
    with pytest.raises(FastMRIFormatError, match="reconstruction_rss contains NaN"):
        write_fastmri(path, k, reconstruction_rss=np.full((2, 6, 5), np.nan, np.float32))
    with pytest.raises(FastMRIFormatError, match="not well-formed XML"):
        write_fastmri(path, k, header=b"<broken")
    assert not path.exists()
