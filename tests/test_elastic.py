"""Pipelined GLEAM under torchrun's elastic agent (``--max-restarts``; 2 gloo stages on CPU): one
stage's process SIGKILLed mid-run makes the agent restart every worker; they resume from the
newest step every stage checkpointed and the final ``last.pt`` equals an uninterrupted run's bit
for bit (staleness 0). A hung (SIGSTOPped) stage ends in a restart too, through
``strategy.timeout``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training.stage_checkpoints import saved_steps
from random_kills import compare_runs

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
STEPS = 24


def torchrun(data: Path, out: Path, restarts: int, timeout: float = 30) -> list[str]:
    sets = [f"data.root={data}", f"train.out_dir={out}", "strategy.name=pipeline"]
    sets += ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
    sets += ["data.batch_size=1", f"train.steps={STEPS}", "train.device=cpu"]
    sets += [f"strategy.timeout={timeout}", "strategy.staleness=0", "train.ckpt_every=1"]
    sets += ["train.val_every=0", "train.log_every=1", "train.tensorboard=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += [f"--max-restarts={restarts}", "--monitor-interval=0.2"]
    cmd += ["-m", "gleam_mri.cli", "train", CONFIG, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def worker(parent: int, rank: int) -> int | None:
    """The pid of the first-attempt worker of ``rank`` under the torchrun process ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            if b"TORCHELASTIC_RESTART_COUNT=0" in environ:
                return int(entry.name)
    return None


def run_and_fault(cmd: list[str], out: Path, at_step: int, sig: int) -> tuple[str, float]:
    """Run ``cmd``; send ``sig`` to stage 1's process once it checkpointed ``at_step``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    with subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.time() + 240
        while time.time() < deadline and not [s for s in saved_steps(out, 1) if s >= at_step]:
            assert proc.poll() is None, "the run ended before the fault"
            time.sleep(0.02)
        pid = worker(proc.pid, 1)
        assert pid is not None and max(saved_steps(out, 1)) < STEPS
        os.kill(pid, sig)
        _, stderr = proc.communicate(timeout=300)
        if sig == signal.SIGSTOP:  # the agent kills it; do not leave a stopped process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-4000:]
    return stderr, time.perf_counter() - started


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("elastic")
    data = root / "data"
    spec = SyntheticSpec(n_volumes=3, slices_per_volume=2, shape=(32, 24), n_coils=3)
    write_synthetic_dataset(data, spec, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(
        torchrun(data, root / "straight", 0), env=env, capture_output=True, text=True, check=False
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    return data, root / "straight"


@pytest.mark.slow
def test_killed_stage_restarts_every_worker_and_ends_identical(reference, tmp_path):
    data, straight = reference
    out = tmp_path / "elastic"
    stderr, _ = run_and_fault(torchrun(data, out, restarts=1), out, 4, signal.SIGKILL)
    assert "exitcode: -9" in stderr  # the agent saw the killed worker, restarted the group: rc 0
    assert compare_runs(straight, out) == []
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if "train/loss" in line]) == STEPS


@pytest.mark.slow
def test_hung_stage_times_out_and_restarts(reference, tmp_path):
    data, straight = reference
    out = tmp_path / "hung"
    cmd = torchrun(data, out, restarts=1, timeout=3)
    stderr, _ = run_and_fault(cmd, out, 4, signal.SIGSTOP)
    assert "stage 1" in stderr or "rank 1" in stderr  # stage 0 named the peer that hung
    assert compare_runs(straight, out) == []
