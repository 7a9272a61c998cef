"""gleam train with strategy.name=pipeline under torchrun (2 gloo stages on CPU): validation,
per-stage checkpoints, coordinated resume, merge, eval; and the checkpoint bookkeeping alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training import stage_checkpoints
from gleam_mri.training.checkpoint import load_checkpoint
from gleam_mri.training.stage_checkpoints import prune, resume_step, saved_steps, stage_file
from gleam_mri.training.strategies.stage_link import PipelineLayout

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")


def torchrun(data: Path, out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    sets = [f"data.root={data}", f"train.out_dir={out}", "strategy.name=pipeline"]
    sets += ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
    sets += ["data.batch_size=1", f"train.steps={steps}", "train.device=cpu"]
    sets += ["strategy.timeout=30", "train.ckpt_every=2", "train.val_every=2", "train.log_every=1"]
    sets += ["data.max_val_items=2", "train.tensorboard=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += ["-m", "gleam_mri.cli", "train", CONFIG, "--quiet", *extra]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    spec = SyntheticSpec(n_volumes=3, slices_per_volume=2, shape=(32, 24), n_coils=3)
    write_synthetic_dataset(data, spec, progress=False)
    return data


def test_torchrun_pipeline_validates_checkpoints_resumes_and_merges(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    done = torchrun(dataset, out, 4)
    assert done.returncode == 0, done.stderr[-3000:]
    # per-stage checkpoints: stage 1 (last) keeps only step 4; stage 0 may still need step 2
    assert saved_steps(out, 1) == [4] and saved_steps(out, 0) == [2, 4]
    stages = [load_checkpoint(stage_file(out, s, 4)) for s in (0, 1)]
    assert [s["modules"] for s in stages] == [[0], [1]]
    merged = load_checkpoint(out / "last.pt")
    assert merged["step"] == 4 and merged["strategy"]["stages"] == 2
    for stage in stages:  # each stage's trained parameters are in the merged checkpoint
        for name, value in stage["params"].items():
            assert torch.equal(merged["model"][name], value), name
    # one rank logs: the final loss every step and the whole chain's validation at 0, 2, 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val/PSNR" in r]
    assert [r["step"] for r in val] == [0, 2, 4]
    assert all(r["val/PSNR"] > 0 and 0 < r["val/SSIM"] <= 1 for r in val)
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    stage0 = (out / "metrics_stage0.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in stage0] == [1, 2, 3, 4]
    assert cli.main(["eval", str(out / "last.pt"), str(dataset / "test")]) == 0
    assert "| network |" in capsys.readouterr().out

    # without --resume nothing is overwritten
    before = (out / "last.pt").read_bytes()
    again = torchrun(dataset, out, 4)
    assert again.returncode != 0 and "--resume" in again.stderr
    assert (out / "last.pt").read_bytes() == before

    # resume to 6 steps == 6 uninterrupted steps (batches are step-indexed)
    resumed = torchrun(dataset, out, 6, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = torchrun(dataset, tmp_path / "straight", 6)
    assert straight.returncode == 0, straight.stderr[-3000:]
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    val = [json.loads(line) for line in lines]
    val_loss = [r["val/loss"] for r in val if "val/loss" in r]
    assert len(val_loss) == 4 and val_loss[-1] < val_loss[0]  # overlapped stages learn
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert a["step"] == b["step"] == 6
    for name, value in b["model"].items():
        assert torch.equal(a["model"][name], value), name
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps] == sorted(steps)  # the log continues, no duplicated records
    assert steps.count(4) == 2  # step 4's train record and validation record, once each


def test_pipeline_without_torchrun_is_a_clear_error(tmp_path, capsys):
    args = ["train", CONFIG, "--set", "strategy.name=pipeline", "--set", f"data.root={tmp_path}"]
    assert cli.main(args) == 2
    assert "torchrun" in capsys.readouterr().err


def touch_stage_files(out: Path, steps_by_stage: dict[int, list[int]]) -> None:
    for stage, steps in steps_by_stage.items():
        for step in steps:
            stage_file(out, stage, step).write_bytes(b"x")


def test_prune_keeps_what_a_lagging_stage_may_still_need(tmp_path):
    layout = PipelineLayout(stages=3)
    touch_stage_files(tmp_path, {0: [2, 4, 6, 8, 10], 2: [2, 4, 6]})
    # stage 0 at step 10, staleness 1: the last stage has done >= 10 - 2 * 2 = 6 steps
    prune(tmp_path, layout, stage=0, done=10, every=2, lag=2)
    assert saved_steps(tmp_path, 0) == [6, 8, 10]
    prune(tmp_path, layout, stage=2, done=6, every=2, lag=2)  # the last stage: only its newest
    assert saved_steps(tmp_path, 2) == [6]


def gathered(monkeypatch, views: list[tuple[int, list[int], bool]]) -> None:
    """Make ``all_gather_object`` return the given per-rank views (no process group)."""

    def fake(result: list, _mine) -> None:
        result[:] = views

    monkeypatch.setattr(stage_checkpoints.dist, "all_gather_object", fake)


def test_resume_step_is_the_newest_step_every_stage_saved(tmp_path, monkeypatch):
    layout = PipelineLayout(stages=2, replicas=2)
    gathered(
        monkeypatch, [(0, [4, 6], False), (0, [4, 6], False), (1, [4], False), (1, [4], False)]
    )
    assert resume_step(tmp_path, layout, rank=0, resume=True) == 4
    with pytest.raises(FileExistsError, match="--resume"):
        resume_step(tmp_path, layout, rank=0, resume=False)
    gathered(monkeypatch, [(0, [6], False), (0, [6], False), (1, [4], False), (1, [4], False)])
    with pytest.raises(ValueError, match="no step was checkpointed by every stage"):
        resume_step(tmp_path, layout, rank=3, resume=True)
    gathered(monkeypatch, [(0, [], False)] * 2 + [(1, [], False)] * 2)
    assert resume_step(tmp_path, layout, rank=1, resume=True) == 0
    assert resume_step(tmp_path, layout, rank=1, resume=False) == 0
