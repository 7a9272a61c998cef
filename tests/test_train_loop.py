"""The training loop end to end: simulate -> train -> eval -> recon, resume after a real kill,
NaN stop keeping the last good checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.loop import TrainingStopped, fit, read_metrics_log
from gleam_mri.training.run_config import load_config

DEMO_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")

TINY = [
    "model.unrolls=2",
    "strategy.modules=2",
    "model.features=4",
    "model.blocks=1",
    "data.batch_size=2",
    "train.log_every=1",
    "train.tensorboard=false",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 24), n_coils=3, seed=1)
    write_synthetic_dataset(root, spec, progress=False)
    return root


def _overrides(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={data_dir}", f"train.out_dir={out}", *TINY, *extra]


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_cli_simulate_train_eval_recon(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    sets = _overrides(data_dir, out, "train.steps=4", "train.val_every=2", "train.tensorboard=true")
    args = ["train", DEMO_CONFIG, "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    ckpt = out / "last.pt"
    assert load_checkpoint(ckpt)["step"] == 4
    log = read_metrics_log(out)
    assert [r["step"] for r in log if "train/loss" in r] == [1, 2, 3, 4]
    assert any("val/PSNR" in r for r in log)
    assert list((out / "tensorboard").iterdir())
    metrics = tmp_path / "metrics.csv"
    assert cli.main(["eval", str(ckpt), str(data_dir / "test"), "--out", str(metrics)]) == 0
    assert metrics.read_text().startswith("file,NMSE,PSNR,SSIM")
    test_file = sorted((data_dir / "test").glob("*.h5"))[0]
    recon_dir = tmp_path / "recon"
    formats = ["--formats", "h5,nii,png,dcm"]
    assert cli.main(["recon", str(ckpt), str(test_file), "-o", str(recon_dir), *formats]) == 0
    assert len(list((recon_dir / f"{test_file.stem}_dicom").glob("*.dcm"))) == 2
    with h5py.File(recon_dir / f"{test_file.stem}.h5") as hf:
        assert hf["reconstruction"].shape == (2, 32, 24)
    assert nib.load(recon_dir / f"{test_file.stem}.nii.gz").shape == (24, 32, 2)
    assert (recon_dir / f"{test_file.stem}.png").stat().st_size > 500
    # a file as fastMRI ships them: no maps (ESPIRiT), other coil count and size, cropped target
    raw = _fastmri_style_file(tmp_path / "file_brain_AXT1_001.h5")
    assert cli.main(["recon", str(ckpt), str(raw), "-o", str(recon_dir), "--formats", "h5"]) == 0
    with h5py.File(recon_dir / "file_brain_AXT1_001.h5") as hf:
        recon = hf["reconstruction"][()]
    assert recon.shape == (2, 40, 40) and np.isfinite(recon).all() and recon.max() > 0
    capsys.readouterr()


def _fastmri_style_file(path: Path) -> Path:
    """Write with h5py directly, the way fastMRI's files are laid out (no gleam extensions)."""
    from gleam_mri.data.ismrmrd_header import make_ismrmrd_header
    from gleam_mri.physics.coils import birdcage_maps
    from gleam_mri.physics.operators import SenseOp
    from gleam_mri.physics.phantoms import phantom_2d

    rng = np.random.default_rng(0)
    images = torch.from_numpy(np.stack([phantom_2d((64, 72), rng) for _ in range(2)]))
    maps = birdcage_maps(5, (64, 72)).expand(2, -1, -1, -1)
    kspace = SenseOp(maps, None, 2).forward(images.to(torch.complex64)).numpy()
    rss = np.abs(images.numpy())[:, 12:52, 16:56].astype(np.float32)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace.astype(np.complex64))
        hf.create_dataset("reconstruction_rss", data=rss)
        hf.create_dataset(
            "ismrmrd_header", data=make_ismrmrd_header((64, 72, 1), recon_size=(40, 40, 1))
        )
        hf.attrs["max"] = float(rss.max())
        hf.attrs["acquisition"] = "AXT1"
    return path


def test_refuses_to_overwrite_a_run(data_dir, tmp_path):
    cfg = load_config(DEMO_CONFIG, _overrides(data_dir, tmp_path, "train.steps=1"))
    fit(cfg, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        fit(cfg, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def _train_cmd(data_dir: Path, out: Path, extra: list[str], resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "gleam_mri.cli", "train", DEMO_CONFIG, "--quiet"]
    for s in _overrides(data_dir, out, *extra):
        cmd += ["--set", s]
    return [*cmd, "--resume"] if resume else cmd


@pytest.mark.parametrize("strategy", ["greedy", "e2e"])
def test_resume_after_kill_equals_uninterrupted(data_dir, tmp_path, strategy):
    """A run killed (SIGKILL) mid-training and resumed ends with bit-identical parameters."""
    steps = 8
    extra = [f"strategy.name={strategy}", f"train.steps={steps}", "train.ckpt_every=1"]
    extra += ["train.val_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads in every run
    ref = subprocess.run(_train_cmd(data_dir, tmp_path / "ref", extra), env=env, check=False)
    assert ref.returncode == 0

    out = tmp_path / "killed"
    with subprocess.Popen(_train_cmd(data_dir, out, extra), env=env) as proc:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "last.pt").exists() and load_checkpoint(out / "last.pt")["step"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = load_checkpoint(out / "last.pt")["step"]
    assert 3 <= killed_at < steps, "the kill should interrupt the run"
    resumed = subprocess.run(_train_cmd(data_dir, out, extra, resume=True), env=env, check=False)
    assert resumed.returncode == 0
    a, b = _params(tmp_path / "ref" / "last.pt"), _params(out / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps_logged = [r["step"] for r in read_metrics_log(out) if "train/loss" in r]
    assert steps_logged == list(range(1, steps + 1))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    cfg = load_config(
        DEMO_CONFIG,
        _overrides(data_dir, tmp_path, "train.steps=6", "train.ckpt_every=2", "train.val_every=0"),
    )
    from gleam_mri.training.strategies.base import Strategy

    original = Strategy.train_step
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            batch.target[:] = float("nan")
        return original(self, batch)

    monkeypatch.setattr(Strategy, "train_step", poisoned)
    with pytest.raises(TrainingStopped, match="step 4") as err:
        fit(cfg, progress=False)
    assert "last good checkpoint" in str(err.value)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    json.dumps(read_metrics_log(tmp_path))  # the log stays readable


@pytest.fixture(scope="module")
def noisy_data_dir(tmp_path_factory) -> Path:
    """A small 2D set at 15 dB SNR: enough slices to train on, noise a small net can remove."""
    root = tmp_path_factory.mktemp("noisy")
    spec = SyntheticSpec(
        n_volumes=10, slices_per_volume=2, shape=(48, 40), n_coils=4, snr_db=15, seed=1
    )
    write_synthetic_dataset(root, spec, progress=False)
    return root


@pytest.mark.parametrize(
    "strategy,extra",
    [
        ("e2e", []),
        ("checkpoint", []),
        ("invertible", ["model.invertible=true"]),
        ("greedy", []),
        ("greedy", ["strategy.mode=sequential"]),
    ],
)
def test_training_lowers_the_validation_loss(noisy_data_dir, tmp_path, strategy, extra):
    sets = [f"strategy.name={strategy}", "train.steps=300", "train.val_every=300", *extra]
    sets += ["optim.lr=3e-3", "model.features=8", "model.blocks=2"]
    cfg = load_config(DEMO_CONFIG, _overrides(noisy_data_dir, tmp_path, *sets))
    fit(cfg, progress=False)
    val = {r["step"]: r["val/loss"] for r in read_metrics_log(tmp_path) if "val/loss" in r}
    assert set(val) == {0, 300}
    assert val[300] < 0.95 * val[0], val


def test_3d_training_on_slabs_and_slab_inference(tmp_path):
    data = tmp_path / "data3d"
    spec = SyntheticSpec(kind="3d", n_volumes=3, slices_per_volume=1, shape=(8, 24, 12), n_coils=3)
    write_synthetic_dataset(data, spec, progress=False)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "synthetic-3d.yaml")
    sets = [f"data.root={data}", f"train.out_dir={tmp_path / 'run'}", *TINY, "data.batch_size=1"]
    sets += ["data.slab=10", "data.slab_overlap=4", "train.steps=3", "train.val_every=3"]
    sets += ["data.mask={name: poisson, acceleration: 2, calib: [2, 2]}"]
    fit(load_config(config, sets), progress=False)
    log = read_metrics_log(tmp_path / "run")
    assert any(r.get("step") == 3 and "val/PSNR" in r for r in log)
    test_file = next((data / "test").glob("*.h5"))
    out = tmp_path / "recon"
    ckpt = str(tmp_path / "run" / "last.pt")
    assert cli.main(["recon", ckpt, str(test_file), "-o", str(out), "--formats", "h5,nii"]) == 0
    with h5py.File(out / f"{test_file.stem}.h5") as hf:
        volume = hf["reconstruction"][()]
    assert volume.shape == (1, 8, 24, 12) and np.isfinite(volume).all() and volume.max() > 0
