"""``gleam adapt`` never below compressed sensing: a network made useless gives CS's image, and
says so; the blend of the network and CS with the lowest held-out loss is kept."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri import cli
from gleam_mri.adapt.floor import (
    SHARES,
    blend,
    choose_cs_weight,
    compare_with_cs,
    cs_images,
    volume_of,
)
from gleam_mri.adapt.scan import load_scan
from gleam_mri.adapt.splits import Splits
from gleam_mri.adapt.zero_shot import AdaptOptions
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.cs import DEFAULT_LAMBDA
from gleam_mri.selfsup.split import HELD_OUT_LINES, Splitter
from gleam_mri.training.checkpoint import load_checkpoint, save_checkpoint

MASK = "{name: random, center_fractions: [0.16], accelerations: [2]}"
SMALL = ["model.features=8", "model.unrolls=3", "model.blocks=2", "model.dc.cg_iters=4"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("floor")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=1, shape=(32, 24), n_coils=3)
    write_synthetic_dataset(root, spec, progress=False)
    return next(root.rglob("*.h5"))


def adapt_args(scan: Path, out: Path, *extra: str) -> list[str]:
    args = ["adapt", str(scan), "-o", str(out), "--mask", MASK, "--val-every", "1"]
    return [*args, "--formats", "h5", "--quiet", *extra]


def test_a_useless_network_gives_the_cs_image_and_says_so(scan_file, tmp_path, capsys):
    trained = tmp_path / "trained"
    sets = [a for s in SMALL for a in ("--set", s)]
    assert cli.main([*adapt_args(scan_file, trained, "--steps", "2", "--no-cs"), *sets]) == 0
    assert "compared_with_cs" in json.loads((trained / "adapt.json").read_text())
    ckpt = load_checkpoint(trained / "adapt.pt")
    ckpt["model"] = {k: v * 10 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    broken = save_checkpoint(tmp_path / "broken.pt", ckpt)  # every weight x10: useless
    capsys.readouterr()

    out = tmp_path / "out"
    extra = ["--init", str(broken), "--steps", "1", "--set", "optim.lr=1e-12"]
    assert cli.main(adapt_args(scan_file, out, *extra)) == 0
    printed = capsys.readouterr().out
    assert "kept CS" in printed and "the image written is CS's" in printed
    record = json.loads((out / "adapt.json").read_text())["compared_with_cs"]
    assert record["kept"] == "cs" and record["cs_heldout_loss"] < record["network_heldout_loss"]
    mask = {"name": "random", "center_fractions": [0.16], "accelerations": [2]}
    scan = load_scan(scan_file, mask)
    expected = volume_of(scan, cs_images(scan.items, record["cs_lambda"]))
    with h5py.File(out / f"{scan_file.stem}.h5") as hf:
        np.testing.assert_array_equal(hf["reconstruction"][()], expected)


def test_too_few_lines_to_train_gives_cs_at_the_default_weight_and_says_so(
    scan_file, tmp_path, capsys
):
    out, few = tmp_path / "few", {"name": "random", "center_fractions": [0.1], "accelerations": [8]}
    sets = [a for s in SMALL for a in ("--set", s)]
    args = ["adapt", str(scan_file), "-o", str(out), "--mask", json.dumps(few), "--quiet"]
    assert cli.main([*args, "--formats", "h5", *sets]) == 0  # 2 lines, both in the centre
    printed = capsys.readouterr().out
    assert "no network trained" in printed and "cannot hold out" in printed
    assert f"CS l1 weight {DEFAULT_LAMBDA:g}, the default" in printed
    assert not (out / "adapt.pt").exists()  # no network to keep
    record = json.loads((out / "adapt.json").read_text())
    assert "cannot hold out" in record["untrained"]
    assert record["compared_with_cs"]["kept"] == "cs"
    assert record["compared_with_cs"]["cs_lambda"] == DEFAULT_LAMBDA
    scan = load_scan(scan_file, few)
    expected = volume_of(scan, cs_images(scan.items, DEFAULT_LAMBDA))
    with h5py.File(out / f"{scan_file.stem}.h5") as hf:
        np.testing.assert_array_equal(hf["reconstruction"][()], expected)


class _Fixed:
    """A stand-in strategy whose 'network' returns a fixed image per call."""

    def __init__(self, image_of) -> None:
        self.image_of = image_of

    def reconstruct(self, batch):
        return self.image_of(batch)


def _splits(scan_file: Path) -> tuple[Splits, list]:
    mask = {"name": "random", "center_fractions": [0.16], "accelerations": [2]}
    scan = load_scan(scan_file, mask)
    options = AdaptOptions()
    return Splits(scan.items, options, Splitter(**HELD_OUT_LINES)), scan


def test_the_blend_with_the_lowest_heldout_loss_is_kept(scan_file):
    splits, scan = _splits(scan_file)
    validation = splits.validation_items()
    choice = choose_cs_weight(validation)
    cs = compare_with_cs(
        _Fixed(lambda b: torch.zeros_like(b.kspace[:, 0])), validation, choice, "cpu"
    )
    assert set(cs.losses) == set(SHARES) and cs.kept == "cs" and cs.share == 0.0
    assert cs.losses[0.0] == pytest.approx(choice.loss)  # share 0 is CS itself
    # the true image (fully sampled k-space, at the item's scale) beats CS and every blend
    full = open_dataset(scan_file, None, "file")[0]
    truth = SenseOp(full.maps, None, 2).adjoint(full.kspace * full.scale / scan.items[0].scale)
    best = compare_with_cs(_Fixed(lambda b: truth), validation, choice, "cpu")
    assert best.kept == "network" and best.share == 1.0
    assert min(best.losses.values()) == best.losses[1.0] < best.losses[0.0]
    assert "kept the network" in best.describe()


def test_a_blend_mixes_magnitudes_without_cancelling_phases():
    network = torch.tensor([[2.0 + 0j, 1j, 1.0 + 0j]])
    cs = torch.tensor([[-2.0 + 0j, 1j, 3.0 + 0j]])  # the first pixel in opposite phase
    half = blend(network, cs, 0.5)
    torch.testing.assert_close(half.abs(), torch.tensor([[2.0, 1.0, 2.0]]))
    torch.testing.assert_close(half[0, 1:], torch.tensor([1j, 2.0 + 0j]))
    assert blend(network, cs, 1.0) is network and blend(network, cs, 0.0) is cs
