"""``gleam adapt``: scan-specific training on a small real scan, outputs, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.fft import ifftnc
from gleam_mri.metrics import psnr
from gleam_mri.physics.coils import rss
from gleam_mri.training.checkpoint import load_checkpoint

MASK = "{name: random, center_fractions: [0.16], accelerations: [4]}"
# the 24-line synthetic slice: 12 lines, so that whole lines can be held out beside the centre
SMALL_MASK = "{name: random, center_fractions: [0.16], accelerations: [2]}"
SMALL = [  # a small network: the test runs in seconds
    "model.features=8",
    "model.unrolls=3",
    "model.blocks=2",
    "model.dc.cg_iters=4",
]


def _sets(*extra: str) -> list[str]:
    return [arg for s in [*SMALL, *extra] for arg in ("--set", s)]


@pytest.fixture(scope="module")
def real_brain(tmp_path_factory, request) -> Path:
    """The real fully sampled brain at half resolution: the central 64 x 64 k-space, 8 coils."""
    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    source = shared / "real_fullysampled" / "pulseq_flash2d_brain_16ch.h5"
    if not source.exists():
        pytest.skip("../shared/data is absent on this machine")
    kspace = read_fastmri(source).kspace[:, :8, 32:96, 32:96].copy()
    target = rss(ifftnc(torch.from_numpy(kspace[0]), 2), dim=0).numpy()[None]
    path = tmp_path_factory.mktemp("real") / "brain64.h5"
    write_fastmri(path, kspace, reconstruction_rss=target)
    return path


def test_adapt_on_a_real_scan_improves_on_zero_filled(real_brain, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["adapt", str(real_brain), "-o", str(out), "--mask", MASK, "--steps", "20"]
    assert cli.main([*args, "--val-every", "10", "--quiet", *_sets()]) == 0
    printed = capsys.readouterr().out
    assert "kept step" in printed and "peak memory of a training step" in printed
    assert {p.name for p in out.iterdir()} >= {
        "brain64.h5",
        "brain64.nii.gz",
        "brain64.png",
        "adapt.pt",
        "adapt.json",
    }
    with h5py.File(out / "brain64.h5") as hf:
        recon = hf["reconstruction"][0]
    with h5py.File(real_brain) as hf:
        reference = hf["reconstruction_rss"][0]
    mask = {"name": "random", "center_fractions": [0.16], "accelerations": [4]}
    item = open_dataset(real_brain, mask, "espirit", deterministic_masks=True)[0]
    zero_filled = item.denormalize(rss(ifftnc(item.kspace, 2), dim=1))[0].numpy()
    peak = float(reference.max())
    # measured: 22.3 dB against 20.6 dB zero-filled
    assert psnr(reference, recon, peak) > psnr(reference, zero_filled, peak) + 1.0
    record = json.loads((out / "adapt.json").read_text())
    assert record["steps"] == 20 and record["best_step"] in {h["step"] for h in record["history"]}
    assert record["memory_bytes"] > 0
    # the kept weights reconstruct the file again with gleam recon
    assert load_checkpoint(out / "adapt.pt")["step"] == record["best_step"]


def test_fully_sampled_file_without_a_mask_is_refused(real_brain, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["adapt", str(real_brain), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(real_brain) in err and "fully sampled" in err and "--mask" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def synthetic_2d(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    spec = SyntheticSpec(n_volumes=1, slices_per_volume=1, shape=(32, 24), n_coils=3)
    write_synthetic_dataset(
        root,
        spec,
        progress=False,
    )
    return next(root.rglob("*.h5"))


def _undersampled_copy(source: Path, target: Path, lines: np.ndarray) -> Path:
    """``source`` with only the k-space lines ``lines`` (bool over W) kept and a mask."""
    vol = read_fastmri(source)
    kspace = vol.kspace * lines
    write_fastmri(target, kspace, mask=lines.astype(np.float32), maps=vol.maps)
    return target


def test_only_calibration_lines_cannot_be_split_without_cs(synthetic_2d, tmp_path, capsys):
    # with CS (the default) the scan gets CS instead: tests/test_adapt_floor.py
    lines = np.zeros(24, dtype=bool)
    lines[8:16] = True  # nothing measured beyond the calibration region
    path = _undersampled_copy(synthetic_2d, tmp_path / "calib.h5", lines)
    args = ["adapt", str(path), "-o", str(tmp_path / "o"), "--quiet", "--no-cs"]
    assert cli.main([*args, "--set", "ssdu.keep_calibration=true"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "cannot hold out" in err


def test_unsampled_centre_is_a_clear_error(synthetic_2d, tmp_path, capsys):
    lines = np.zeros(24, dtype=bool)
    lines[::3] = True
    lines[12] = False  # no DC line: no calibration region for ESPIRiT
    vol = read_fastmri(synthetic_2d)
    path = tmp_path / "nodc.h5"
    write_fastmri(path, vol.kspace * lines, mask=lines.astype(np.float32))  # no maps
    assert cli.main(["adapt", str(path), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err


def test_corrupt_or_mismatched_init_checkpoint(synthetic_2d, tmp_path, capsys):
    lines = np.zeros(24, dtype=bool)
    lines[::2] = True
    lines[10:14] = True
    path = _undersampled_copy(synthetic_2d, tmp_path / "u.h5", lines)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    out = tmp_path / "o"
    assert cli.main(["adapt", str(path), "-o", str(out), "--init", str(corrupt), "--quiet"]) == 2
    assert str(corrupt) in capsys.readouterr().err
    # a checkpoint of a 3D network on a 2D scan
    run3d = tmp_path / "run3d"
    data3d = tmp_path / "data3d"
    spec = SyntheticSpec(kind="3d", n_volumes=3, slices_per_volume=1, shape=(8, 16, 12), n_coils=2)
    write_synthetic_dataset(data3d, spec, progress=False)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "synthetic-3d.yaml")
    train = ["train", config, "--quiet", "--set", f"data.root={data3d}"]
    train += [
        "--set",
        f"train.out_dir={run3d}",
        "--set",
        "train.steps=1",
        "--set",
        "model.unrolls=1",
    ]
    train += ["--set", "model.features=2", "--set", "model.blocks=1", "--set", "strategy.modules=1"]
    train += [
        "--set",
        "train.val_every=0",
        "--set",
        "data.mask={name: poisson, acceleration: 2, calib: [2, 2]}",
        "--set",
        "data.slab=null",
    ]
    assert cli.main(train) == 0
    args = ["adapt", str(path), "-o", str(out), "--init", str(run3d / "last.pt"), "--quiet"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "3d" in err and str(path) in err
    assert not out.exists()


@pytest.mark.parametrize(
    "kind,shape,mask,extra",
    [
        ("3d", "8x24x16", "{name: poisson, acceleration: 2, calib: [4, 4]}", ["--slab", "12"]),
        ("cine", "4x24x16", "{name: cine, acceleration: 2, center_lines: 4}", []),
    ],
)
def test_adapt_3d_in_slabs_and_cine(kind, shape, mask, extra, tmp_path):
    data = tmp_path / "data"
    spec = SyntheticSpec(kind=kind, n_volumes=1, slices_per_volume=1, n_coils=3, seed=2)
    spec.shape = tuple(int(n) for n in shape.split("x"))
    write_synthetic_dataset(data, spec, progress=False)
    source = next(data.rglob("*.h5"))
    out = tmp_path / "out"
    args = ["adapt", str(source), "-o", str(out), "--mask", mask, "--steps", "4", *extra]
    args += ["--val-every", "2", "--quiet", "--set", "model.features=4", "--set", "model.unrolls=2"]
    assert cli.main(args) == 0
    with h5py.File(out / f"{source.stem}.h5") as hf:
        volume = hf["reconstruction"][()]
    assert volume.shape == (1, *spec.shape) and np.isfinite(volume).all() and volume.max() > 0
    # the adapted network is an ordinary checkpoint: gleam recon reads it
    again = tmp_path / "again"
    assert (
        cli.main(["recon", str(out / "adapt.pt"), str(source), "-o", str(again), "--formats", "h5"])
        == 0
    )
    assert (again / f"{source.stem}.h5").exists()


def _adapt_args(source: Path, out: Path, *extra: str) -> list[str]:
    args = ["adapt", str(source), "-o", str(out), "--mask", SMALL_MASK, "--steps", "8"]
    return [*args, "--val-every", "2", "--patience", "50", "--formats", "h5", "--quiet", *extra]


def test_weight_average_and_swap():
    from gleam_mri.training.selection import update_average, weights_swapped

    net = torch.nn.BatchNorm1d(2)  # weights and an integer buffer
    average: dict[str, torch.Tensor] = {}
    update_average(average, net, 0.9)  # starts at the weights
    assert torch.equal(average["weight"], torch.ones(2))
    with torch.no_grad():
        net.weight.fill_(3.0)
    net.num_batches_tracked += 4
    update_average(average, net, 0.9)
    assert torch.allclose(average["weight"], torch.full((2,), 0.9 * 1 + 0.1 * 3))
    assert average["num_batches_tracked"] == 4  # not averaged: copied
    with weights_swapped(net, average):
        assert torch.allclose(net.weight, torch.full((2,), 1.2))
    assert torch.equal(net.weight, torch.full((2,), 3.0))  # restored


def test_out_of_range_average_is_refused(synthetic_2d, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*_adapt_args(synthetic_2d, out, "--average", "1"), *_sets()]) == 2
    assert "--average must lie in [0, 1)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("average", ["0", "0.8"])
def test_interrupted_adapt_resumes_to_identical_weights_and_image(
    average, synthetic_2d, tmp_path, monkeypatch, capsys
):
    from gleam_mri.adapt.zero_shot import state_path
    from gleam_mri.training.run import LastCheckpoint

    avg = ("--average", average)  # the moving average of the weights is saved and resumed too
    straight = tmp_path / "straight"
    assert cli.main([*_adapt_args(synthetic_2d, straight, *avg), *_sets()]) == 0
    assert not state_path(straight).exists()  # removed once the outputs are written

    saves, original = [], LastCheckpoint.save

    def save_then_die(self, done):
        original(self, done)
        saves.append(done)
        if len(saves) == 2:  # killed right after the state of step 4 was written
            raise KeyboardInterrupt

    out = tmp_path / "killed"
    monkeypatch.setattr(LastCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        cli.main([*_adapt_args(synthetic_2d, out, *avg), *_sets()])
    monkeypatch.setattr(LastCheckpoint, "save", original)
    assert saves == [2, 4] and load_checkpoint(state_path(out))["step"] == 4

    # without --resume nothing is overwritten; with other options the state is refused
    assert cli.main([*_adapt_args(synthetic_2d, out, *avg), *_sets()]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        cli.main([*_adapt_args(synthetic_2d, out, *avg, "--resume", "--seed", "5"), *_sets()]) == 2
    )
    assert "options" in capsys.readouterr().err and state_path(out).exists()

    assert cli.main([*_adapt_args(synthetic_2d, out, *avg, "--resume"), *_sets()]) == 0
    a, b = load_checkpoint(straight / "adapt.pt"), load_checkpoint(out / "adapt.pt")
    assert a["step"] == b["step"] and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ref = json.loads((straight / "adapt.json").read_text())
    got = json.loads((out / "adapt.json").read_text())
    assert got["history"] == ref["history"] and got["memory_bytes"] == ref["memory_bytes"]
    with (
        h5py.File(straight / f"{synthetic_2d.stem}.h5") as f,
        h5py.File(out / f"{synthetic_2d.stem}.h5") as g,
    ):
        np.testing.assert_array_equal(f["reconstruction"][()], g["reconstruction"][()])
    assert not state_path(out).parent.exists()


def test_large_setting_and_explicit_options():
    from gleam_mri.adapt.command import _options
    from gleam_mri.adapt.zero_shot import LARGE_SCHEDULE, AdaptOptions

    parse = cli.build_parser().parse_args
    plain = _options(parse(["adapt", "s.h5", "-o", "o"]))
    assert plain == AdaptOptions()
    large = _options(parse(["adapt", "s.h5", "-o", "o", "--large"]))
    assert {k: getattr(large, k) for k in LARGE_SCHEDULE} == LARGE_SCHEDULE
    mixed = _options(parse(["adapt", "s.h5", "-o", "o", "--large", "--steps", "7"]))
    assert mixed.steps == 7 and mixed.patience == LARGE_SCHEDULE["patience"]
