"""gleam convert: BART CFL, ISMRMRD and twix raw data to the fastMRI layout, then reconstruct."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gleam_mri import cli
from gleam_mri.data.cfl import gleam_to_cfl, write_cfl
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.data.raw import detect_format, read_raw
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset


@pytest.mark.parametrize(
    "kind,shape", [("2d", (24, 20)), ("3d", (6, 16, 12)), ("cine", (4, 16, 12))]
)
def test_cfl_to_fastmri_round_trip(tmp_path, kind, shape):
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((3, *shape)) + 1j * rng.standard_normal((3, *shape))).astype(
        np.complex64
    )
    kspace[..., 1::3] = 0  # unsampled phase-encoding lines
    write_cfl(tmp_path / "scan", gleam_to_cfl(kspace, kind))
    assert detect_format(tmp_path / "scan.cfl") == "cfl"
    raw = read_raw(tmp_path / "scan.cfl")
    assert raw.kind == kind
    np.testing.assert_array_equal(raw.kspace[0], kspace)
    out = tmp_path / "out"
    assert cli.main(["convert", str(tmp_path / "scan.cfl"), "-o", str(out)]) == 0
    vol = read_fastmri(out / "scan.h5")
    assert vol.kind == kind
    np.testing.assert_array_equal(vol.kspace[0], kspace)
    assert vol.mask is not None and vol.mask[..., 1::3].sum() == 0 and vol.mask[..., ::3].all()
    assert vol.reconstruction_rss is None  # undersampled: no reference


def test_convert_errors_name_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    write_synthetic_dataset(
        data, SyntheticSpec(n_volumes=1, slices_per_volume=1, shape=(16, 16), n_coils=2), False
    )
    fastmri_file = next((data / "train").glob("*.h5"))
    with pytest.raises(FastMRIFormatError, match="already in the fastMRI layout"):
        detect_format(fastmri_file)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello")
    assert cli.main(["convert", str(garbage), "-o", str(tmp_path / "o")]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "o")]) == 2


def test_convert_real_twix_file(shared_data, tmp_path):
    pytest.importorskip("twixtools")
    out = tmp_path / "out"
    assert cli.main(["convert", str(shared_data / "twix" / "gre.dat"), "-o", str(out)]) == 0
    vol = read_fastmri(out / "gre.h5")
    assert vol.kspace.shape == (1, 2, 160, 160)
    assert np.isfinite(vol.kspace).all() and np.abs(vol.kspace).max() > 0


def test_recon_reads_raw_formats_directly(tmp_path):
    """gleam recon on a BART CFL file: converted on the fly, reconstructed to NIfTI and DICOM."""
    import nibabel as nib

    from gleam_mri.training.loop import fit
    from gleam_mri.training.run_config import load_config

    data = tmp_path / "data"
    spec = SyntheticSpec(n_volumes=3, slices_per_volume=1, shape=(32, 24), n_coils=3, seed=2)
    write_synthetic_dataset(data, spec, progress=False)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
    sets = [f"data.root={data}", f"train.out_dir={tmp_path / 'run'}", "train.steps=2"]
    sets += ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
    sets += ["train.tensorboard=false", "train.device=cpu", "train.val_every=0"]
    sets += ["data.batch_size=1"]
    fit(load_config(config, sets), progress=False)
    test_file = next((data / "test").glob("*.h5"))
    kspace = read_fastmri(test_file).kspace[0]  # (C, H, W), fully sampled
    write_cfl(tmp_path / "raw", gleam_to_cfl(kspace, "2d"))
    out = tmp_path / "recon"
    args = ["recon", str(tmp_path / "run" / "last.pt"), str(tmp_path / "raw.cfl"), "-o", str(out)]
    assert cli.main([*args, "--formats", "nii,dcm"]) == 0
    assert nib.load(out / "raw.nii.gz").shape == (24, 32, 1)
    assert len(list((out / "raw_dicom").glob("*.dcm"))) == 1


def test_espirit_maps_added_to_a_fastmri_file_are_the_datasets_own(tmp_path, capsys):
    import torch

    from gleam_mri.data.datasets import open_dataset
    from gleam_mri.data.fastmri import write_fastmri

    spec = SyntheticSpec(n_volumes=1, slices_per_volume=2, shape=(24, 20), n_coils=3)
    write_synthetic_dataset(tmp_path / "syn", spec, progress=False)
    vol = read_fastmri(next((tmp_path / "syn").rglob("*.h5")))
    bare = write_fastmri(tmp_path / "bare.h5", vol.kspace, vol.reconstruction_rss)
    assert cli.main(["convert", str(bare), "--maps", "espirit", "-o", str(tmp_path / "o")]) == 0
    added = read_fastmri(tmp_path / "o" / "bare.h5")
    np.testing.assert_array_equal(added.kspace, vol.kspace)
    expected = open_dataset(bare, None, "espirit")
    for i in range(2):
        assert torch.equal(torch.from_numpy(added.maps[i]), expected[i].maps[0])
    for again in (["--maps", "espirit"], []):  # it has maps now; and it is no raw file
        args = ["convert", str(tmp_path / "o" / "bare.h5"), *again, "-o", str(tmp_path / "x")]
        assert cli.main(args) == 2
    assert "already holds coil maps" in capsys.readouterr().err
