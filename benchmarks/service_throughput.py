"""Reconstructions per second through ``gleam serve`` against ``gleam recon`` in-process.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python3 benchmarks/service_throughput.py --files 12

Writes ``--files`` synthetic fully sampled 2D scans and a PGD checkpoint (random weights: the
arithmetic is that of a trained one) to a temporary folder, then times, for the same files:

- ``gleam recon`` path: :func:`reconstruct_file` per file, sequentially (loads the checkpoint
  each call, as one ``gleam recon`` invocation per file does);
- in-process, loaded once: :func:`reconstruct_with_run` per file with the network loaded once
  (the compute the service cannot avoid);
- the service: a ``gleam serve`` subprocess on a loopback port (``--device cpu``), ``--clients``
  client threads over real HTTP, each taking files from a shared list: upload, poll every ``--poll``
  seconds (0.1) until done, download the HDF5. Wall time from the first upload to the last download.

Every path writes HDF5 only; the service's results are checked equal to the in-process ones.
Prints a markdown table (files/s and the ratio to in-process, loaded once).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import h5py
import httpx
import numpy as np
import torch

from gleam_mri.config import config_to_dict
from gleam_mri.data.synthetic import SyntheticSpec, parse_shape, write_synthetic_dataset
from gleam_mri.inference import load_run, reconstruct_file, reconstruct_with_run
from gleam_mri.training.checkpoint import save_checkpoint
from gleam_mri.training.run import build_model_for
from gleam_mri.training.run_config import config_from_dict


def write_checkpoint(path: Path, unrolls: int, features: int) -> Path:
    """A PGD-ResNet checkpoint (seeded random weights) that gleam recon reads."""
    cfg = config_from_dict(
        {
            "data": {"mask": {"name": "random", "center_fractions": [0.08], "accelerations": [4]}},
            "model": {"name": "pgd", "unrolls": unrolls, "features": features, "blocks": 2},
            "strategy": {"name": "greedy", "modules": unrolls},
            "train": {"device": "cpu", "tensorboard": False},
        }
    )
    net = build_model_for(cfg, "2d", torch.device("cpu"))
    config = config_to_dict(cfg)
    state = {"step": 0, "kind": "2d", "config": config, "model_config": config["model"]}
    return save_checkpoint(path, {**state, "model": net.state_dict()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(ckpt: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "gleam_mri.cli", "serve", "--model", f"bench={ckpt}"]
    cmd += ["--port", str(port), "--device", "cpu", "--data-dir", str(data_dir)]
    cmd += ["--log-level", "warning", "--max-queue", "1000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("gleam serve exited") from None
            time.sleep(0.1)
    raise TimeoutError("gleam serve did not start")


def through_service(
    url: str, files: list[Path], clients: int, poll: float
) -> tuple[float, list, dict]:
    """Wall seconds, per-file latencies and results with ``clients`` concurrent clients."""
    todo: queue.Queue[Path] = queue.Queue()
    for f in files:
        todo.put(f)
    latencies, results, errors = [], {}, []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    return
                t0 = time.perf_counter()
                r = http.post("/v1/reconstructions", files={"file": (path.name, path.read_bytes())})
                job = r.json()
                while job["state"] not in ("done", "failed"):
                    time.sleep(poll)
                    job = http.get(f"/v1/reconstructions/{job['id']}").json()
                if job["state"] == "failed":
                    errors.append(job["error"])
                    return
                r = http.get(f"/v1/reconstructions/{job['id']}/result", params={"format": "h5"})
                with h5py.File(io.BytesIO(r.content)) as hf:
                    results[path.name] = hf["reconstruction"][()]
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"jobs failed: {errors[:3]}")
    return time.perf_counter() - start, latencies, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--shape", default="96x96")
    parser.add_argument("--coils", type=int, default=4)
    parser.add_argument("--unrolls", type=int, default=4)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between job polls")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the service runs with OMP_NUM_THREADS=1 too
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = write_checkpoint(root / "last.pt", args.unrolls, args.features)
        spec = SyntheticSpec(
            n_volumes=args.files,
            slices_per_volume=args.slices,
            shape=parse_shape(args.shape),
            n_coils=args.coils,
            seed=0,
            splits={"test": 1.0},
        )
        files = sorted(
            p for fs in write_synthetic_dataset(root / "data", spec, False).values() for p in fs
        )
        reconstruct_file(ckpt, files[0], root / "warm", ("h5",), device="cpu")  # warm-up
        t0 = time.perf_counter()
        for f in files:
            reconstruct_file(ckpt, f, root / "recon", ("h5",), device="cpu")
        recon_s = time.perf_counter() - t0
        run, _ = load_run(ckpt, "cpu")
        t0 = time.perf_counter()
        for f in files:
            reconstruct_with_run(run, f, root / "once", ("h5",))
        once_s = time.perf_counter() - t0
        proc, url = start_service(ckpt, root / "serve")
        try:
            through_service(url, files[:1], 1, args.poll)  # warm-up
            serve_s, latencies, results = through_service(url, files, args.clients, args.poll)
        finally:
            proc.terminate()
            proc.wait(30)
        for f in files:
            with h5py.File(root / "once" / f"{f.stem}.h5") as hf:
                np.testing.assert_allclose(results[f.name], hf["reconstruction"][()], rtol=1e-6)
    n = len(files)
    rows = [
        ("gleam recon (reconstruct_file per file)", recon_s, None),
        ("in-process, network loaded once", once_s, None),
        (f"gleam serve, {args.clients} HTTP clients", serve_s, statistics.median(latencies)),
    ]
    print(
        f"\n{n} files x {args.slices} slices, {args.shape}, {args.coils} coils; "
        f"PGD {args.unrolls} iterations, {args.features} features; CPU, 1 thread per process\n"
    )
    print("| path | wall s | files/s | vs loaded once | median latency s |")
    print("|---|---|---|---|---|")
    for name, seconds, latency in rows:
        lat = "" if latency is None else f"{latency:.2f}"
        print(f"| {name} | {seconds:.2f} | {n / seconds:.2f} | {once_s / seconds:.2f} | {lat} |")
    if args.out:
        record = {
            "args": vars(args) | {"out": str(args.out)},
            "files": n,
            "recon_s": recon_s,
            "once_s": once_s,
            "serve_s": serve_s,
            "latencies": latencies,
        }
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
