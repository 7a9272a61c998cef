"""Self-supervision (SSDU): the k-space split, the held-out loss, training with every strategy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.fft import fftnc
from gleam_mri.physics.espirit import find_calibration_size
from gleam_mri.schema import ConfigError
from gleam_mri.selfsup import KspaceLoss, SplitError, Splitter, hold_out, measured_mask, split_batch
from gleam_mri.training.loop import fit, read_metrics_log
from gleam_mri.training.run_config import load_config
from gleam_mri.training.strategies import build_strategy
from models_for_tests import KINDS, make_batch, make_net

DEMO_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")


def _line_mask(width: int, height: int, centre: int, seed: int = 0) -> torch.Tensor:
    """Bool ``(1, H, W)``: random lines (about a third) and ``centre`` central lines."""
    gen = torch.Generator().manual_seed(seed)
    lines = torch.rand(width, generator=gen) < 0.35
    lines[width // 2 - centre // 2 : width // 2 - centre // 2 + centre] = True
    return lines.expand(1, height, width).clone()


@pytest.mark.parametrize("selection", ["gaussian", "uniform"])
def test_split_is_disjoint_and_covers_exactly_the_measured_samples(selection):
    measured = _line_mask(40, 32, centre=8)
    gen = torch.Generator().manual_seed(3)
    kept, held = hold_out(measured, 0.4, gen, fft_ndim=2, selection=selection)
    assert not (kept & held).any()
    assert torch.equal(kept | held, measured)
    assert int(held.sum()) == round(0.4 * int(measured.sum()))


@pytest.mark.parametrize("selection", ["gaussian", "uniform"])
def test_line_units_hold_out_whole_measured_lines(selection):
    measured = _line_mask(40, 32, centre=8)
    gen = torch.Generator().manual_seed(5)
    kept, held = hold_out(measured, 0.4, gen, 2, selection, keep_center=4, units="lines")
    assert not (kept & held).any() and torch.equal(kept | held, measured)
    lines = measured[0, 0]
    held_lines = held[0].any(0)
    assert torch.equal(held[0], held_lines.expand(32, 40))  # whole readout lines
    assert int(held_lines.sum()) == round(0.4 * int(lines.sum()))
    assert not held_lines[18:22].any()  # the central lines of the kept block stay
    poisson = torch.rand(1, 32, 40, generator=gen) < 0.3  # no fully sampled axis: points
    _, held = hold_out(poisson, 0.4, gen, 2, keep_center=0, units="lines")
    assert int(held.sum()) == round(0.4 * int(poisson.sum()))


def test_split_keeps_the_centre_block_or_the_calibration_region():
    measured = _line_mask(40, 32, centre=10)
    gen = torch.Generator().manual_seed(0)
    kept, held = hold_out(measured, 0.5, gen, 2, keep_center=4)
    assert kept[0, 14:18, 18:22].all() and not held[0, 14:18, 18:22].any()
    kept, held = hold_out(measured, 0.5, gen, 2, keep_center=0, keep_calibration=True)
    calib = find_calibration_size(measured, fft_ndim=2)
    assert calib[-1] >= 10
    assert kept[0, :, 15:25].all() and not held[0, :, 15:25].any()
    kept, held = hold_out(measured, 0.5, gen, 2, keep_center=0)  # nothing kept: centre can go
    assert held[0, :, 15:25].any()


def test_gaussian_selection_prefers_the_centre():
    measured = torch.ones(1, 64, 64, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    _, held = hold_out(measured, 0.2, gen, 2, selection="gaussian", keep_center=0)
    centre = held[0, 16:48, 16:48].float().mean()
    border = (held[0].float().sum() - held[0, 16:48, 16:48].float().sum()) / (64 * 64 - 32 * 32)
    assert centre > 2 * border


def test_split_draws_depend_on_the_seed_only():
    measured = _line_mask(40, 32, centre=8)
    a = Splitter()(measured, 0.4, 2, seed=7)
    b = Splitter()(measured, 0.4, 2, seed=7)
    c = Splitter()(measured, 0.4, 2, seed=8)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_too_few_samples_to_split_is_a_clear_error():
    measured = torch.zeros(1, 16, 16, dtype=torch.bool)
    measured[0, 6:10, 6:10] = True  # only the kept centre was measured
    with pytest.raises(SplitError, match="outside the kept centre"):
        hold_out(measured, 0.4, torch.Generator(), 2, keep_center=4)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        hold_out(measured, 1.0, torch.Generator(), 2)


@pytest.mark.parametrize("kind", KINDS)
def test_split_batch_holds_out_measured_kspace_and_the_loss_is_zero_for_the_truth(kind):
    batch = make_batch(kind, dtype=torch.float64, crop=False)
    gen = torch.Generator().manual_seed(5)
    truth = torch.randn(batch.kspace[:, 0].shape, dtype=torch.complex128, generator=gen)
    kspace = batch.mask * fftnc(batch.maps * truth.unsqueeze(1), batch.fft_ndim)
    batch = dataclasses.replace(batch, kspace=kspace)
    split = split_batch(batch, 0.4, Splitter(keep_center=2), seeds=range(batch.batch_size))
    assert split.loss_kspace.shape == batch.kspace.shape
    for b in range(batch.batch_size):
        measured = measured_mask(batch, b)
        keep, held = split.mask[b].bool(), split.loss_mask[b].bool()
        assert not (keep & held).any() and torch.equal(keep | held, measured)
        assert torch.equal(split.kspace[b], batch.kspace[b] * keep)
        assert torch.equal(split.loss_kspace[b], batch.kspace[b] * held)
    loss = KspaceLoss()
    assert float(loss(truth, split)) < 1e-12  # reproduces every held-out sample
    assert float(loss(truth * 0.9, split)) == pytest.approx(0.2)  # 0.1 in l2 and in l1
    assert float(loss(torch.zeros_like(truth), split)) == pytest.approx(2.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "name,extra",
    [("e2e", {}), ("checkpoint", {}), ("invertible", {}), ("greedy", {"modules": 2})],
)
def test_every_strategy_trains_on_the_heldout_kspace_loss(kind, name, extra):
    net = make_net(kind, depth=2, invertible=name == "invertible", dtype=torch.float32)
    batch = make_batch(kind, dtype=torch.float32)
    split = split_batch(batch, 0.4, Splitter(keep_center=2), seeds=range(batch.batch_size))
    strategy = build_strategy(name, net, KspaceLoss(), lr=1e-2, **extra)
    before = [p.detach().clone() for p in net.parameters()]
    stats = strategy.train_step(split)
    assert stats["loss"] > 0
    changed = [not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True)]
    assert all(changed)
    if name == "greedy":
        assert {"loss/module_0", "loss/module_1"} <= set(stats)


@pytest.fixture(scope="module")
def undersampled_dir(tmp_path_factory) -> Path:
    """A small noisy 2D set; training reads it as undersampled data, scored only at the end."""
    root = tmp_path_factory.mktemp("ssdu")
    spec = SyntheticSpec(n_volumes=8, slices_per_volume=2, shape=(48, 40), n_coils=4, snr_db=20)
    write_synthetic_dataset(root, spec, progress=False)
    return root


def test_self_supervised_training_lowers_the_error_against_the_hidden_truth(
    undersampled_dir, tmp_path
):
    sets = [
        f"data.root={undersampled_dir}",
        f"train.out_dir={tmp_path}",
        "train.supervision=self",
        "train.steps=200",
        "train.val_every=200",
        "train.tensorboard=false",
        "train.device=cpu",
        "model.unrolls=3",
        "strategy.modules=3",
        "model.features=8",
        "model.blocks=2",
        "optim.lr=3e-3",
        "data.batch_size=2",
    ]
    cfg = load_config(DEMO_CONFIG, sets)
    fit(cfg, progress=False)
    val = {r["step"]: r for r in read_metrics_log(tmp_path) if "val/loss" in r}
    assert set(val) == {0, 200}
    # trained without targets; the targets of the validation files score it (measured: +0.73 dB,
    # SSIM 0.686 -> 0.730)
    assert val[200]["val/loss"] < val[0]["val/loss"]
    assert val[200]["val/PSNR"] > val[0]["val/PSNR"] + 0.5, val
    assert val[200]["val/SSIM"] > val[0]["val/SSIM"] + 0.02, val


def test_ssdu_config_is_checked():
    with pytest.raises(ConfigError, match="module_loss"):
        load_config(DEMO_CONFIG, ["train.supervision=self", "strategy.module_loss=ssim"])
    with pytest.raises(ConfigError, match=r"ssdu\.fraction"):
        load_config(DEMO_CONFIG, ["ssdu.fraction=1.5"])
    from gleam_mri.training.data import splitter_from_config

    cfg = load_config(DEMO_CONFIG, ["ssdu.units=lines"])
    assert splitter_from_config(cfg.ssdu).units == "lines"
    with pytest.raises(ConfigError, match=r"ssdu\.units"):
        load_config(DEMO_CONFIG, ["ssdu.units=rows"])


def test_self_supervised_training_reads_undersampled_files_without_targets(tmp_path):
    """fastMRI-layout files with their own mask and no reconstruction: training and validation
    run on held-out k-space alone (validation reports the loss, no image metrics)."""
    import numpy as np

    from gleam_mri.data.fastmri import read_fastmri, write_fastmri

    full = tmp_path / "full"
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 24), n_coils=3, seed=1)
    write_synthetic_dataset(full, spec, progress=False)
    lines = np.zeros(24, dtype=bool)
    lines[::2] = True
    lines[10:14] = True
    for source in full.rglob("*.h5"):
        vol = read_fastmri(source)
        target = tmp_path / "under" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_fastmri(target, vol.kspace * lines, mask=lines.astype(np.float32), maps=vol.maps)
    sets = [
        f"data.root={tmp_path / 'under'}",
        f"train.out_dir={tmp_path / 'run'}",
        "train.supervision=self",
        "train.steps=4",
        "train.val_every=2",
        "train.tensorboard=false",
        "train.device=cpu",
        "model.unrolls=2",
        "strategy.modules=2",
        "model.features=4",
        "model.blocks=1",
    ]
    fit(load_config(DEMO_CONFIG, sets), progress=False)
    val = [r for r in read_metrics_log(tmp_path / "run") if "val/loss" in r]
    assert [r["step"] for r in val] == [0, 2, 4]
    assert all("val/PSNR" not in r for r in val)
