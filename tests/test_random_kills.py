"""gleam train SIGKILLed at 20 seeded random moments (some inside checkpoint writes) and resumed
each time: every checkpoint stays readable and the result equals an uninterrupted run's bit for
bit. ``benchmarks/kill_resume.py`` runs the same with more options (and for a study arm)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gleam_mri.atomic import remove_stale_temporaries
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from random_kills import compare_runs, kill_and_resume

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
STEPS = 200


def train_command(data: Path, out: Path, resume: bool) -> list[str]:
    sets = [f"data.root={data}", f"train.out_dir={out}", "model.unrolls=2", "strategy.modules=2"]
    sets += ["model.features=4", "model.blocks=1", "data.batch_size=2", "train.device=cpu"]
    sets += [f"train.steps={STEPS}", "train.ckpt_every=1", "train.val_every=0"]
    sets += ["train.log_every=1", "train.tensorboard=false"]
    cmd = [sys.executable, "-m", "gleam_mri.cli", "train", CONFIG, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return [*cmd, "--resume"] if resume else cmd


@pytest.mark.slow
def test_twenty_random_kills_resume_to_identical_parameters(tmp_path):
    data = tmp_path / "data"
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 32), n_coils=3, seed=1)
    write_synthetic_dataset(data, spec, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(train_command(data, tmp_path / "ref", False), env=env, check=True)

    out = tmp_path / "killed"
    report = kill_and_resume(
        lambda attempt: train_command(data, out, attempt > 0),
        out,
        20,
        seed=14,
        max_delay=0.1,
        startup_delay=2.5,
    )
    assert report.kills == 20 and not report.finished_early, report.summary()
    assert report.unreadable == [] and report.went_back == [], report.summary()
    assert report.final_returncode == 0
    assert report.modes["write"] >= 4 and report.in_write >= 2, report.summary()
    assert compare_runs(tmp_path / "ref", out) == []
    steps = [
        line for line in (out / "metrics.jsonl").read_text().splitlines() if "train/loss" in line
    ]
    assert len(steps) == STEPS  # the log continues without gaps or duplicates
    assert not [p for p in out.iterdir() if p.name.startswith(".last.pt.")]  # temporaries removed


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "last.pt"
    stale = [tmp_path / ".last.pt.0123abcd.tmp", tmp_path / ".last.pt.deadbeef.tmp"]
    kept = [tmp_path / ".last.pt.xyz.tmp", tmp_path / ".other.pt.0123abcd.tmp", target]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert remove_stale_temporaries(target) == stale
    assert sorted(tmp_path.iterdir()) == sorted(kept)
