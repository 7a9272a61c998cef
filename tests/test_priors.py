"""The shipped prior: loads, matches its record, reconstructs (``gleam recon --model``), starts
``gleam adapt``; damaged or mismatched prior files give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from gleam_mri import cli
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.inference.priors import (
    PriorError,
    check_psnr,
    check_slice,
    load_prior,
    prior_for_kind,
    prior_names,
    prior_path,
)
from gleam_mri.metrics import psnr
from gleam_mri.training.checkpoint import load_checkpoint, save_checkpoint

NAME = "brain-2d"


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prior-scan")
    write_synthetic_dataset(
        root,
        SyntheticSpec(n_volumes=1, slices_per_volume=1, shape=(48, 40), n_coils=4),
        progress=False,
    )
    return next(root.rglob("*.h5"))


def test_the_shipped_prior_loads_and_gives_its_recorded_psnr():
    assert NAME in prior_names()
    run, record = load_prior(NAME)  # its weights fit the config it records (check_compatible)
    assert run.kind == "2d" and record["name"] == NAME
    assert prior_for_kind("2d") == prior_path(NAME)
    measured = check_psnr(run)
    assert measured == pytest.approx(record["check_psnr"], abs=0.05)
    batch = check_slice()  # and it reconstructs: better than the zero-filled image of the slice
    zero_filled = (batch.maps.conj() * _coil_images(batch)).sum(1)[0].abs().numpy()
    assert measured > psnr(batch.target[0].numpy(), zero_filled) + 3


def _coil_images(batch):
    from gleam_mri.fft import ifftnc

    return ifftnc(batch.kspace, 2)


def test_a_damaged_or_mismatched_prior_file_is_refused_with_its_name(tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(prior_path(NAME).read_bytes()[:1000])
    with pytest.raises(PriorError, match=r"truncated\.pt"):
        load_prior(truncated)
    ckpt = load_checkpoint(prior_path(NAME))
    other = dict(ckpt, model_config={**ckpt["model_config"], "features": 8})
    mismatched = save_checkpoint(tmp_path / "mismatched.pt", other)
    with pytest.raises(PriorError, match=r"(?s)mismatched\.pt.*features: checkpoint 8, current 16"):
        load_prior(mismatched)
    unrecorded = save_checkpoint(
        tmp_path / "unrecorded.pt", {k: v for k, v in ckpt.items() if k != "prior"}
    )
    with pytest.raises(PriorError, match=r"unrecorded\.pt.*prior record"):
        load_prior(unrecorded)
    with pytest.raises(PriorError, match=rf"no shipped prior named .knee.*{NAME}"):
        load_prior("knee")


def test_gleam_recon_with_a_shipped_model(scan, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["recon", "--model", NAME, str(scan), "-o", str(out), "--formats", "h5"]) == 0
    with h5py.File(out / f"{scan.stem}.h5") as hf:
        assert hf["reconstruction"].shape == (1, 48, 40)
    assert cli.main(["recon", "--model", "knee", str(scan), "-o", str(out)]) == 2
    assert "no shipped prior named 'knee'" in capsys.readouterr().err
    vol = read_fastmri(scan)  # without maps: estimated as gleam adapt estimates them
    write_fastmri(tmp_path / "nomaps.h5", vol.kspace, reconstruction_rss=vol.reconstruction_rss)
    assert cli.main(["recon", "--model", NAME, str(tmp_path / "nomaps.h5"), "-o", str(out)]) == 0
    with h5py.File(out / "nomaps.h5") as hf:
        image = hf["reconstruction"][()]
    assert image.shape == (1, 48, 40) and np.isfinite(image).all() and image.max() > 0


def test_gleam_adapt_starts_from_the_prior_of_the_scan_kind(scan, tmp_path, capsys):
    mask = "{name: random, center_fractions: [0.16], accelerations: [2]}"
    args = ["adapt", str(scan), "--mask", mask, "--steps", "1", "--val-every", "1", "--no-cs"]
    args += ["--maps", "espirit", "--formats", "h5", "--quiet"]
    assert cli.main([*args, "-o", str(tmp_path / "prior")]) == 0
    assert f"starts from prior {NAME}" in capsys.readouterr().out
    assert json.loads((tmp_path / "prior" / "adapt.json").read_text())["init"] == f"prior {NAME}"
    assert cli.main([*args, "-o", str(tmp_path / "scratch"), "--init", "none"]) == 0
    assert "starts from scratch" in capsys.readouterr().out
    assert cli.main([*args, "-o", str(tmp_path / "other"), "--set", "model.features=8"]) == 0
    assert f"scratch (the shipped prior {NAME} is another network)" in capsys.readouterr().out
    # naming the prior is the default start: same config, same weights, the same image
    assert cli.main([*args, "-o", str(tmp_path / "named"), "--init", NAME]) == 0
    assert f"starts from prior {NAME}" in capsys.readouterr().out
    images = []
    for run in ("prior", "named"):
        with h5py.File(tmp_path / run / scan.name) as hf:
            images.append(hf["reconstruction"][()])
    np.testing.assert_array_equal(*images)
    named = ["-o", str(tmp_path / "bad"), "--init", NAME, "--set", "model.features=8"]
    assert cli.main([*args, *named]) == 2
    assert f"--init {NAME}: the shipped prior {NAME} is another network" in capsys.readouterr().err
