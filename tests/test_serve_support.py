"""Helpers for the ``gleam serve`` tests (and the Java client's end-to-end test): a tiny
checkpoint, a tiny fastMRI-layout scan, and a real ``gleam serve`` subprocess on a free port.

No tests here; the fixtures are imported by ``tests/test_serve*.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from gleam_mri.config import config_to_dict
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training.checkpoint import save_checkpoint
from gleam_mri.training.run import build_model_for
from gleam_mri.training.run_config import config_from_dict

TINY_MODEL = {"name": "pgd", "unrolls": 2, "features": 4, "blocks": 1}
TINY_MASK = {"name": "random", "center_fractions": [0.08], "accelerations": [4]}


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A ``last.pt`` that ``gleam recon`` reads: a 2-iteration PGD network (random weights,
    seeded), 2D, trained-mask 4x random."""
    cfg = config_from_dict(
        {
            "name": "serve-test",
            "data": {"kind": "2d", "mask": TINY_MASK},
            "model": TINY_MODEL,
            "strategy": {"name": "greedy", "modules": 2},
            "train": {"device": "cpu", "seed": seed, "tensorboard": False},
        }
    )
    net = build_model_for(cfg, "2d", torch.device("cpu"))
    config = config_to_dict(cfg)
    state = {"step": 0, "kind": "2d", "config": config, "model_config": config["model"]}
    return save_checkpoint(path, {**state, "model": net.state_dict(), "train_seconds": 0.0})


def tiny_scans(folder: Path, n: int = 1, slices: int = 2, shape=(32, 24)) -> list[Path]:
    """``n`` fully sampled fastMRI-layout 2D files of ``slices`` slices, 3 coils."""
    spec = SyntheticSpec(
        n_volumes=n,
        slices_per_volume=slices,
        shape=shape,
        n_coils=3,
        seed=3,
        splits={"test": 1.0},
    )
    written = write_synthetic_dataset(folder, spec, progress=False)
    return sorted(p for files in written.values() for p in files)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until ``GET url/healthz`` answers 200 (the process must stay alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gleam serve exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"gleam serve did not answer {url}/healthz in {timeout:g} s")


def serve_command(
    models: dict[str, Path], data_dir: Path, port: int, extra: Sequence[str] = ()
) -> list[str]:
    """The ``gleam serve`` command line (``python -m gleam_mri.cli serve ...``)."""
    cmd = [sys.executable, "-m", "gleam_mri.cli", "serve", "--port", str(port)]
    for name, ckpt in models.items():
        cmd += ["--model", f"{name}={ckpt}"]
    return [*cmd, "--data-dir", str(data_dir), "--device", "cpu", "--log-level", "warning", *extra]


@contextmanager
def running_service(
    models: dict[str, Path], data_dir: Path, extra: Sequence[str] = (), port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A ``gleam serve`` subprocess on a free loopback port; yields ``(base_url, process)``
    once ``/healthz`` answers, and stops it (SIGTERM, then SIGKILL) at the end."""
    port = free_port() if port is None else port
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(serve_command(models, data_dir, port, extra), env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
