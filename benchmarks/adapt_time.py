"""Wall time of ``gleam adapt`` at its defaults on a 2D 8-coil 256 x 256 slice (issue 24, item 5).

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/adapt_time.py --out benchmarks/results/adapt-time

Simulates one fully sampled 8-coil 256 x 256 slice (``gleam simulate``: the real Colin27 head of
``../shared/data`` when present, else the built-in phantom; SNR 30 dB), removes its coil maps (a
real scan has none), and runs ``gleam adapt FILE --mask RANDOM`` at 4x (8 % centre) with its
defaults and any ``--extra`` arguments, timing the whole command (maps, training, the comparison
with CS, writing). Prints and writes ``adapt-time.json``: seconds, steps, the kept step, the peak
memory of a training step and the coil maps used, read from ``adapt.json``; PSNR of the image
against the simulated target. Absolute seconds mean something only on the machine that ran it
(the issue's budget: 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.metrics import volume_metrics

SHARED = Path(
    os.environ.get("GLEAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MASK = "{name: random, center_fractions: [0.08], accelerations: [4]}"


def simulate(folder: Path) -> Path:
    """One fully sampled 8-coil 256 x 256 slice without maps; returns its path."""
    anatomy = SHARED / "colin27_t1.nii.gz"
    command = ["gleam", "simulate", str(folder / "sim"), "--n", "3", "--slices", "1"]
    command += ["--shape", "256x256", "--coils", "8", "--snr", "30", "--quiet"]
    if anatomy.exists():
        command += ["--anatomy", str(anatomy)]
    subprocess.run(command, check=True)
    source = sorted((folder / "sim" / "test").glob("*.h5"))[0]
    vol = read_fastmri(source)
    path = folder / "slice.h5"
    write_fastmri(path, vol.kspace, reconstruction_rss=vol.reconstruction_rss)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of adapt-time.json")
    parser.add_argument("--extra", default="", help="more gleam adapt arguments, quoted")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate(Path(tmp))
        out = Path(tmp) / "adapt"
        command = ["gleam", "adapt", str(path), "-o", str(out), "--mask", MASK, "--quiet"]
        command += ["--formats", "h5", *shlex.split(args.extra)]
        start = time.perf_counter()
        printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        seconds = time.perf_counter() - start
        record = json.loads((out / "adapt.json").read_text())
        with h5py.File(out / "slice.h5") as hf:
            image = hf["reconstruction"][()]
        target = read_fastmri(path).reconstruction_rss
    metrics = volume_metrics(target, image)
    result = {
        "command": shlex.join([*command[:2], "SLICE", *command[3:4], "OUT", *command[5:]]),
        "seconds": round(seconds, 1),
        "steps": record["steps"],
        "kept_step": record["best_step"],
        "train_seconds": round(record["train_seconds"], 1),
        "parts_seconds": {k: round(v, 1) for k, v in record.get("seconds", {}).items()},
        "memory_MiB": round(record["memory_bytes"] / 2**20, 1),
        "memory_method": record["memory_method"],
        "coil_maps": record.get("coil_maps"),
        "kept": None if record["compared_with_cs"] is None else record["compared_with_cs"]["kept"],
        "psnr": round(float(metrics["PSNR"]), 2),
        "ssim": round(float(metrics["SSIM"]), 3),
        "cpu_cores": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    print(printed, end="")
    print(json.dumps(result, indent=2))
    (args.out / "adapt-time.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
