"""gleam train with strategy.name=pipeline under torchrun (2 gloo stages on CPU), then eval."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training.checkpoint import load_checkpoint

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")


def test_torchrun_pipeline_trains_every_stage_and_merges(tmp_path, capsys):
    data = tmp_path / "data"
    spec = SyntheticSpec(n_volumes=3, slices_per_volume=2, shape=(32, 24), n_coils=3)
    write_synthetic_dataset(data, spec, progress=False)
    out = tmp_path / "run"
    sets = [f"data.root={data}", f"train.out_dir={out}", "strategy.name=pipeline"]
    sets += ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
    sets += ["data.batch_size=1", "train.steps=4", "train.device=cpu", "strategy.timeout=20"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += ["-m", "gleam_mri.cli", "train", CONFIG, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = [load_checkpoint(out / f"stage{r}.pt") for r in (0, 1)]
    assert [s["modules"] for s in stages] == [[0], [1]]
    merged = load_checkpoint(out / "last.pt")
    assert merged["step"] == 4
    for stage in stages:  # each stage's trained parameters are in the merged checkpoint
        for name, value in stage["params"].items():
            assert torch.equal(merged["model"][name], value), name
    assert cli.main(["eval", str(out / "last.pt"), str(data / "test")]) == 0
    assert "| network |" in capsys.readouterr().out


def test_pipeline_without_torchrun_is_a_clear_error(tmp_path, capsys):
    args = ["train", CONFIG, "--set", "strategy.name=pipeline", "--set", f"data.root={tmp_path}"]
    assert cli.main(args) == 2
    assert "torchrun" in capsys.readouterr().err
