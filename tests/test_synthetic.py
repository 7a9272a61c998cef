"""The synthetic data set: layout per kind, fastMRI compatibility, CG-SENSE vs zero-filled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri
from gleam_mri.data.synthetic import (
    SyntheticSpec,
    parse_shape,
    split_counts,
    write_synthetic_dataset,
)
from gleam_mri.recon.baselines import default_mask_spec, run_baselines, split_files

SMALL = {"2d": (40, 32), "3d": (12, 24, 20), "cine": (6, 32, 28)}


@pytest.mark.parametrize("kind", ["2d", "3d", "cine"])
def test_each_kind_writes_its_layout(tmp_path, kind):
    spec = SyntheticSpec(kind=kind, n_volumes=3, slices_per_volume=2, shape=SMALL[kind], n_coils=4)
    written = write_synthetic_dataset(tmp_path, spec, progress=False)
    assert {k: len(v) for k, v in written.items()} == {"train": 1, "val": 1, "test": 1}
    info = inspect_fastmri(written["train"][0])
    assert info.kind == kind
    assert info.kspace_shape == (2, 4, *SMALL[kind])
    assert info.has_maps and info.has_target
    vol = read_fastmri(written["test"][0])
    assert vol.kspace.dtype == np.complex64 and vol.maps.shape == vol.kspace.shape
    assert vol.reconstruction_rss.shape == (2, *SMALL[kind])
    assert np.isclose(vol.attrs["max"], vol.reconstruction_rss.max())
    record = json.loads((tmp_path / "dataset.json").read_text())
    assert record["kind"] == kind and record["counts"]["test"] == 1


def test_same_seed_same_data_and_other_seed_differs(tmp_path):
    def first_kspace(folder, seed):
        spec = SyntheticSpec(n_volumes=1, slices_per_volume=1, shape=(32, 32), n_coils=2, seed=seed)
        files = write_synthetic_dataset(folder, spec, progress=False)
        return read_fastmri(files["train"][0]).kspace

    a = first_kspace(tmp_path / "a", 3)
    np.testing.assert_array_equal(a, first_kspace(tmp_path / "b", 3))
    assert not np.allclose(a, first_kspace(tmp_path / "c", 4))


def test_2d_files_read_by_fastmri_slice_dataset(tmp_path):
    mri_data = pytest.importorskip("fastmri.data.mri_data")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=3, shape=(36, 30), n_coils=3)
    files = write_synthetic_dataset(tmp_path, spec, progress=False)
    theirs = mri_data.SliceDataset(tmp_path / "train", challenge="multicoil")
    ours = read_fastmri(files["train"][0])
    assert len(theirs) == 3
    kspace, mask, target, attrs, fname, index = theirs[1]
    np.testing.assert_array_equal(kspace, ours.kspace[1])
    np.testing.assert_array_equal(target, ours.reconstruction_rss[1])
    assert mask is None and fname == files["train"][0].name and index == 1
    assert attrs["encoding_size"] == (36, 30, 1) and attrs["recon_size"] == (36, 30, 1)


def test_cg_sense_beats_zero_filled_at_4x(tmp_path):
    """The issue's check: on the synthetic 2D set at 4x, CG-SENSE beats zero-filled clearly."""
    spec = SyntheticSpec(n_volumes=2, slices_per_volume=2, shape=(96, 96), n_coils=8, seed=5)
    spec.splits = {"train": 1.0}
    write_synthetic_dataset(tmp_path, spec, progress=False)
    files = split_files(tmp_path, "train")
    results = run_baselines(files, default_mask_spec("2d", 4), max_iter=30, lam=1e-3)
    for zf, cg in zip(results["zero-filled"], results["cg-sense"], strict=True):
        assert cg.metrics["PSNR"] > zf.metrics["PSNR"] + 1.5, (zf.metrics, cg.metrics)
        assert cg.metrics["SSIM"] > zf.metrics["SSIM"] + 0.05


def test_spec_validation_and_helpers():
    assert split_counts(12, {"train": 0.7, "val": 0.15, "test": 0.15}) == {
        "train": 8,
        "val": 2,
        "test": 2,
    }
    assert sum(split_counts(3, {"train": 0.7, "val": 0.15, "test": 0.15}).values()) == 3
    assert parse_shape("24x64x48") == (24, 64, 48) and parse_shape(None) is None
    with pytest.raises(ValueError, match="shape"):
        parse_shape("big")
    with pytest.raises(ValueError, match="kind"):
        SyntheticSpec(kind="4d")
    with pytest.raises(ValueError, match="3 sizes"):
        SyntheticSpec(kind="3d", shape=(32, 32))
    with pytest.raises(ValueError, match=">= 8"):
        SyntheticSpec(shape=(4, 32))
    with pytest.raises(ValueError, match="cine"):
        SyntheticSpec(kind="cine", anatomy="head.nii.gz")
