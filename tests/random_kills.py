"""Kill a training command at random moments, resume it each time, compare with an unkilled run.

The reliability check of ``gleam train`` (and of anything else that writes ``last.pt`` files
through :func:`~gleam_mri.training.checkpoint.save_checkpoint` and resumes from them, e.g. a
``gleam study`` arm): :func:`kill_and_resume` starts the command, ``SIGKILL``\\ s it at ``kills``
seeded random moments and starts it again (resuming) after each, then lets the last attempt
finish. After every kill each ``last.pt`` under the output folder must load with
:func:`~gleam_mri.training.checkpoint.load_checkpoint` and its step must not go back. At the end
:func:`compare_runs` checks every parameter tensor of the final checkpoints against an
uninterrupted run's with ``torch.equal`` (bit for bit; CPU, one thread).

Kill moments, drawn per kill with a seeded generator:

- ``write``: once the attempt has written a checkpoint, at the next checkpoint write (as soon as
  the atomic writer's temporary file ``.last.pt.<hex>.tmp`` appears): inside the write;
- ``step``: once the attempt has written a checkpoint, after a uniform random delay (anywhere in
  a step, a validation or a write);
- ``startup``: a uniform random delay after the process started (imports, data, resume).

A kill counts as *inside a checkpoint write* when it left a temporary file behind (the run
removes those when it resumes). ``benchmarks/kill_resume.py`` runs it from the command line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gleam_mri.training.checkpoint import CheckpointError, load_checkpoint

__all__ = ["KillReport", "compare_runs", "kill_and_resume"]

MODES = ("write", "step", "startup")
_TEMPORARY = re.compile(r"\.last\.pt\.[0-9a-f]{8}\.tmp")


@dataclass
class KillReport:
    """What :func:`kill_and_resume` did and saw."""

    kills: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    in_write: int = 0  # kills that interrupted a checkpoint write (left a temporary file)
    steps: list[int] = field(default_factory=list)  # newest checkpointed step after each kill
    unreadable: list[str] = field(default_factory=list)  # checkpoints that failed to load
    went_back: list[str] = field(default_factory=list)  # a checkpoint's step decreased
    finished_early: bool = False  # an attempt finished before its kill
    final_returncode: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.unreadable or self.went_back) and self.final_returncode == 0

    def summary(self) -> str:
        modes = ", ".join(f"{n} {mode}" for mode, n in self.modes.items())
        return (
            f"{self.kills} kills ({modes}; {self.in_write} inside a checkpoint write), "
            f"{len(self.unreadable)} unreadable checkpoints, final run exit code "
            f"{self.final_returncode}, {self.seconds:.1f} s"
        )


def _checkpoints(out: Path) -> list[Path]:
    return sorted(out.rglob("last.pt"))


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".last.pt.*.tmp") if _TEMPORARY.fullmatch(p.name)]


def _signature(out: Path) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) of every ``last.pt``: changes whenever a checkpoint is (re)written."""
    found = {}
    for path in _checkpoints(out):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found[path] = (stat.st_ino, stat.st_mtime_ns)
    return found


def kill_and_resume(
    command: Callable[[int], Sequence[str]],
    out: str | Path,
    kills: int,
    *,
    seed: int = 0,
    shares: dict[str, float] | None = None,
    max_delay: float = 0.3,
    startup_delay: float = 4.0,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
    log: Callable[[str], None] | None = None,
) -> KillReport:
    """Run ``command(attempt)`` (attempt 0, 1, ...; later ones must resume), killing it ``kills``
    times, then let the last attempt finish; ``out`` is the folder holding its ``last.pt``
    file(s) (searched recursively).

    ``shares``: the probability of each kill moment (``write``, ``step``, ``startup``; default
    0.4, 0.5, 0.1); ``max_delay``: the largest random delay (s) of a ``step`` kill;
    ``startup_delay``: the largest of a ``startup`` kill. ``timeout`` bounds each attempt.
    """
    out = Path(out)
    shares = shares or {"write": 0.4, "step": 0.5, "startup": 0.1}
    modes = [m for m in MODES if shares.get(m, 0) > 0]
    weights = np.array([shares[m] for m in modes], dtype=float)
    rng = np.random.default_rng(seed)
    report = KillReport(modes=dict.fromkeys(modes, 0))
    newest: dict[Path, int] = {}
    started_all = time.perf_counter()
    env = env or {**os.environ, "OMP_NUM_THREADS": "1"}
    attempt = 0
    while report.kills < kills:
        mode = str(rng.choice(modes, p=weights / weights.sum()))
        delay = float(rng.uniform(0, startup_delay if mode == "startup" else max_delay))
        before, leftovers = _signature(out), set(_temporaries(out))
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                list(command(attempt)), env=env, stdout=subprocess.DEVNULL, stderr=errors
            )
            attempt += 1
            deadline = time.perf_counter() + timeout
            killed = _wait_and_kill(proc, out, mode, delay, before, deadline)
            proc.wait()
            errors.seek(0)
            stderr = errors.read().decode(errors="replace")
        if not killed:
            if proc.returncode != 0:
                problem = f"attempt {attempt} failed ({proc.returncode}):\n{stderr[-3000:]}"
                raise RuntimeError(problem)
            report.finished_early = True
            break
        report.kills += 1
        report.modes[mode] += 1
        inside = bool(set(_temporaries(out)) - leftovers)
        report.in_write += inside
        steps = _check(out, newest, report)
        report.steps.append(max(steps, default=0))
        if log is not None:
            log(
                f"kill {report.kills}/{kills} ({mode}, attempt {attempt}): checkpoint step "
                f"{report.steps[-1]}{' (inside a write)' if inside else ''}"
            )
    final = subprocess.run(
        list(command(attempt)), env=env, capture_output=True, text=True, timeout=timeout
    )
    report.final_returncode = final.returncode
    if final.returncode != 0 and log is not None:
        log(final.stderr[-3000:])
    _check(out, newest, report)
    report.seconds = time.perf_counter() - started_all
    return report


def _wait_and_kill(
    proc: subprocess.Popen,
    out: Path,
    mode: str,
    delay: float,
    before: dict[Path, tuple[int, int]],
    deadline: float,
) -> bool:
    """Kill ``proc`` at the moment ``mode`` asks for; ``False`` when it ended first."""
    started = time.perf_counter()
    if mode != "startup":  # wait for this attempt's first checkpoint (progress every attempt)
        while proc.poll() is None and _signature(out) == before:
            if time.perf_counter() > deadline:
                break
            time.sleep(0.002)
        started = time.perf_counter()
    if mode == "write":
        known = set(_temporaries(out))
        while proc.poll() is None and not (set(_temporaries(out)) - known):
            if time.perf_counter() > deadline:
                break
            time.sleep(0.0005)
    else:
        while proc.poll() is None and time.perf_counter() < started + delay:
            time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


def _check(out: Path, newest: dict[Path, int], report: KillReport) -> list[int]:
    """Load every ``last.pt`` under ``out``; record unreadable ones and steps that went back."""
    steps = []
    for path in _checkpoints(out):
        try:
            step = int(load_checkpoint(path)["step"])
        except (CheckpointError, KeyError, TypeError, ValueError) as err:
            report.unreadable.append(f"{path}: {err}")
            continue
        if step < newest.get(path, 0):
            report.went_back.append(f"{path}: step {newest[path]} -> {step}")
        newest[path] = step
        steps.append(step)
    return steps


def compare_runs(reference: str | Path, other: str | Path) -> list[str]:
    """Differences between the final checkpoints of two runs (every ``last.pt`` under each, by
    relative path): missing files, steps, parameter names and any tensor not ``torch.equal``
    (the model, and the strategy's state: optimizers and schedulers). Empty: bit-identical."""
    reference, other = Path(reference), Path(other)
    ref = {p.relative_to(reference) for p in _checkpoints(reference)}
    got = {p.relative_to(other) for p in _checkpoints(other)}
    problems = [f"{p}: only in {reference}" for p in sorted(ref - got)]
    problems += [f"{p}: only in {other}" for p in sorted(got - ref)]
    if not ref:
        problems.append(f"no last.pt under {reference}")
    for rel in sorted(ref & got):
        a, b = load_checkpoint(reference / rel), load_checkpoint(other / rel)
        if a["step"] != b["step"]:
            problems.append(f"{rel}: step {a['step']} vs {b['step']}")
        problems += [f"{rel}: {d}" for d in _tensor_diff(a["model"], b["model"], "model")]
        problems += [f"{rel}: {d}" for d in _tensor_diff(a["strategy"], b["strategy"], "strategy")]
    return problems


def _tensor_diff(a, b, where: str) -> list[str]:
    """Where two nested states differ (tensors compared with ``torch.equal``)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
        return [] if same else [f"{where} differs"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(map(str, set(a) ^ set(b)))} in one only"]
        return [d for k in a for d in _tensor_diff(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} entries"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _tensor_diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]
