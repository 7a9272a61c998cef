"""Compressed sensing: l1-wavelet SENSE with its weight chosen on held-out k-space, no reference."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.metrics import psnr
from gleam_mri.recon.classical import cg_sense
from gleam_mri.recon.cs import LAMBDAS, choose_lambda, heldout_items, l1_wavelet

MASK = {"name": "random", "center_fractions": [0.08], "accelerations": [4]}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=2, shape=(64, 64), n_coils=6, seed=1)
    spec.splits, spec.snr_db = {"train": 1.0, "val": 0.0, "test": 0.0}, 30.0
    write_synthetic_dataset(root, spec, progress=False)
    return root / "train"


@pytest.fixture(scope="module")
def items(folder):
    dataset = open_dataset(folder, MASK, "file", deterministic_masks=True)
    return [dataset[i] for i in range(len(dataset))]


def test_the_weight_with_the_lowest_heldout_loss_is_chosen_inside_the_grid(items):
    choice = choose_lambda(heldout_items(items))
    assert choice.lam == min(choice.losses, key=choice.losses.get)
    assert list(choice.losses) == list(LAMBDAS)
    assert LAMBDAS[0] < choice.lam < LAMBDAS[-1]  # the grid brackets the best weight


def test_cs_beats_cg_sense_on_a_simulated_slice(items):
    choice = choose_lambda(heldout_items(items))
    for item in items:
        reference = item.target[0].numpy()
        cs = l1_wavelet(item, choice.lam)[0].abs().numpy()
        cg = cg_sense(item.operator(), item.kspace)[0].abs().numpy()
        peak = float(reference.max())
        assert psnr(reference, cs, peak) > psnr(reference, cg, peak)


def test_cs_depends_on_its_inputs_alone(items):
    np.random.seed(1)  # noqa: NPY002 - the global state sigpy's power iteration would use
    first = l1_wavelet(items[0], 1e-3, iterations=20)
    np.random.seed(2)  # noqa: NPY002
    assert torch.equal(first, l1_wavelet(items[0], 1e-3, iterations=20))


def test_gleam_baseline_reports_the_chosen_weight(folder, capsys):
    args = ["baseline", str(folder), "--methods", "cg-sense,cs", "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "cs: 2d_train_000.h5: l1 weight" in out and "| cs |" in out
    assert cli.main(["baseline", str(folder), "--methods", "bart"]) == 2
    assert "unknown methods ['bart']" in capsys.readouterr().err


def test_gleam_recon_method_cs_writes_the_cs_image_of_its_chosen_weight(folder, tmp_path, capsys):
    (path,) = sorted(folder.glob("*.h5"))
    out = tmp_path / "out"
    assert cli.main(["recon", "--method", "cs", str(path), "-o", str(out)]) == 2
    assert f"{path}: fully sampled" in capsys.readouterr().err and not out.exists()
    mask = "{name: random, center_fractions: [0.08], accelerations: [4]}"
    args = ["recon", "--method", "cs", str(path), "-o", str(out), "--mask", mask]
    assert cli.main([*args, "--formats", "h5"]) == 0
    printed = capsys.readouterr().out
    lam = float(printed.split("CS l1 weight ")[1].split()[0])
    dataset = open_dataset(path, MASK, "file", deterministic_masks=True)
    assert lam == choose_lambda(heldout_items([dataset[0], dataset[1]])).lam
    with h5py.File(out / path.name) as hf:
        written = hf["reconstruction"][()]
    for i in range(2):
        item = dataset[i]
        expected = item.denormalize(l1_wavelet(item, lam).abs())[0].numpy()
        np.testing.assert_allclose(written[i], expected, rtol=1e-5, atol=1e-6 * expected.max())
    assert cli.main(["recon", "--mask", mask, str(path), str(path), "-o", str(out)]) == 2
    assert "--mask goes with --method cs" in capsys.readouterr().err
