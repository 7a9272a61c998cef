"""Compressed sensing: l1-wavelet SENSE with its weight chosen on held-out k-space, no reference."""

from __future__ import annotations

from pathlib import Path

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
