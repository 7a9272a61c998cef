"""Reliability figures (issue 14): random SIGKILLs of ``gleam train`` / a ``gleam study`` arm,
resumed each time, and an elastic restart of pipelined GLEAM, each compared bit for bit with an
uninterrupted run (CPU, one thread per process).

    python benchmarks/kill_resume.py train --kills 20 --seed 14
    python benchmarks/kill_resume.py study --kills 10 --seed 3
    python benchmarks/kill_resume.py adapt --kills 10 --seed 5
    python benchmarks/kill_resume.py elastic --kill-step 4

``train`` / ``study`` / ``adapt``: ``kill_and_resume`` of ``tests/random_kills.py`` (kill
moments: inside checkpoint writes, anywhere in a step, during start-up); ``adapt`` compares the
kept weights (``adapt.pt``), the validation history and the reconstruction. ``elastic``: ``torchrun
--max-restarts 1`` with 2 gloo stages, staleness 0; stage 1's process is SIGKILLed (or SIGSTOPped
with ``--hang``) once it checkpointed ``--kill-step``. Prints one result line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset  # noqa: E402
from random_kills import compare_runs, kill_and_resume  # noqa: E402

CONFIG = str(ROOT / "configs" / "demo-2d.yaml")
TINY = ["model.unrolls=2", "model.features=4", "model.blocks=1", "train.device=cpu"]
TINY += ["train.tensorboard=false", "train.log_every=1"]


def train_command(data: Path, out: Path, steps: int, resume: bool) -> list[str]:
    sets = [f"data.root={data}", f"train.out_dir={out}", *TINY, "strategy.modules=2"]
    sets += ["data.batch_size=2", f"train.steps={steps}", "train.ckpt_every=1", "train.val_every=0"]
    cmd = [sys.executable, "-m", "gleam_mri.cli", "train", CONFIG, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return [*cmd, "--resume"] if resume else cmd


def study_command(data: Path, out: Path, steps: int) -> list[str]:
    sets = [f"data.root={data}", *TINY, "data.batch_size=1", f"train.steps={steps}"]
    sets += ["train.ckpt_every=1", "train.val_every=0", "strategy.modules=null", "model.unrolls=4"]
    cmd = [sys.executable, "-m", "gleam_mri.cli", "study", CONFIG, "--budget", "e2e@2"]
    cmd += ["--out", str(out), "--seeds", "1", "--arms", "greedy", "--device", "cpu", "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def adapt_command(scan: Path, out: Path, steps: int, resume: bool) -> list[str]:
    mask = "{name: random, center_fractions: [0.16], accelerations: [4]}"
    cmd = [sys.executable, "-m", "gleam_mri.cli", "adapt", str(scan), "-o", str(out), "--quiet"]
    cmd += ["--mask", mask, "--steps", str(steps), "--val-every", "1", "--patience", "1000"]
    cmd += ["--formats", "h5", "--device", "cpu"]
    for s in ["model.features=4", "model.unrolls=2", "model.blocks=1", "model.dc.cg_iters=3"]:
        cmd += ["--set", s]
    return [*cmd, "--resume"] if resume else cmd


def compare_adapted(reference: Path, other: Path) -> list[str]:
    """Differences between two ``gleam adapt`` outputs: kept weights, history, reconstruction."""
    import h5py
    import torch

    from gleam_mri.training.checkpoint import load_checkpoint

    a, b = load_checkpoint(reference / "adapt.pt"), load_checkpoint(other / "adapt.pt")
    problems = [
        f"adapt.pt {k} differs"
        for k in a["model"]
        if not torch.equal(a["model"][k], b["model"].get(k))
    ]
    ra = json.loads((reference / "adapt.json").read_text())
    rb = json.loads((other / "adapt.json").read_text())
    problems += [] if ra["history"] == rb["history"] else ["validation history differs"]
    for h5 in sorted(reference.glob("*.h5")):
        with h5py.File(h5) as f, h5py.File(other / h5.name) as g:
            if not np.array_equal(f["reconstruction"][()], g["reconstruction"][()]):
                problems.append(f"{h5.name}: reconstruction differs")
    return problems


def random_kills(args: argparse.Namespace, work: Path, data: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    compare = compare_runs
    if args.target == "adapt":
        steps = args.steps or 60
        scan = sorted(data.rglob("*.h5"))[0]
        compare = compare_adapted

        def command(out: Path, attempt: int) -> list[str]:
            return adapt_command(scan, out, steps, attempt > 0)
    elif args.target == "train":
        steps = args.steps or 200

        def command(out: Path, attempt: int) -> list[str]:
            return train_command(data, out, steps, attempt > 0)
    else:
        steps = args.steps or 120

        def command(out: Path, attempt: int) -> list[str]:
            return study_command(data, out, steps)

    started = time.perf_counter()
    subprocess.run(command(work / "ref", 0), env=env, check=True, capture_output=True)
    ref_s = time.perf_counter() - started
    out = work / "killed"
    report = kill_and_resume(
        lambda attempt: command(out, attempt),
        out,
        args.kills,
        seed=args.seed,
        max_delay=args.max_delay,
        startup_delay=args.startup_delay,
        log=print if args.verbose else None,
    )
    diffs = compare(work / "ref", out)
    print(f"{args.target}: {report.summary()}; uninterrupted run {ref_s:.1f} s")
    print(f"  checkpoint steps after each kill: {report.steps}")
    same = "bit-identical" if not diffs else f"DIFFERENT: {diffs[:5]}"
    ok = report.kills == args.kills and report.ok and not diffs
    what = (
        "kept weights, history and image"
        if args.target == "adapt"
        else "parameters and optimizer state"
    )
    print(f"  final {what} vs uninterrupted: {same}")
    print(f"  RESULT: {report.kills}/{args.kills} kills resumed, {'PASS' if ok else 'FAIL'}")


def elastic(args: argparse.Namespace, work: Path, data: Path) -> None:
    from test_elastic import STEPS, run_and_fault, torchrun

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run(torchrun(data, work / "straight", 0), env=env, check=True, capture_output=True)
    straight_s = time.perf_counter() - started
    out = work / "elastic"
    sig = signal.SIGSTOP if args.hang else signal.SIGKILL
    timeout = 3 if args.hang else 30
    cmd = torchrun(data, out, restarts=1, timeout=timeout)
    stderr, seconds = run_and_fault(cmd, out, args.kill_step, sig)
    diffs = compare_runs(work / "straight", out)
    what = "SIGSTOP (hung, strategy.timeout=3)" if args.hang else "SIGKILL"
    print(
        f"elastic: stage 1 {what} after checkpointing step {args.kill_step} of {STEPS}; "
        f"torchrun --max-restarts 1 restarted both workers and finished in {seconds:.1f} s "
        f"(uninterrupted {straight_s:.1f} s); killed worker seen: {'exitcode: -9' in stderr}"
    )
    same = "bit-identical" if not diffs else f"DIFFERENT: {diffs[:5]}"
    print(f"  final last.pt vs uninterrupted (staleness 0): {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["train", "study", "adapt", "elastic"])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--steps", type=int, default=None, help="training steps of the run")
    parser.add_argument("--max-delay", type=float, default=0.1)
    parser.add_argument("--startup-delay", type=float, default=2.5)
    parser.add_argument("--kill-step", type=int, default=4, help="elastic: stage 1's step")
    parser.add_argument("--hang", action="store_true", help="elastic: SIGSTOP instead of kill")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        shape = (32, 24) if args.target == "elastic" else (32, 32)
        volumes = 3 if args.target == "elastic" else 4
        spec = SyntheticSpec(n_volumes=volumes, slices_per_volume=2, shape=shape, n_coils=3, seed=1)
        write_synthetic_dataset(data, spec, progress=False)
        if args.target == "elastic":
            elastic(args, work, data)
        else:
            random_kills(args, work, data)


if __name__ == "__main__":
    main()
