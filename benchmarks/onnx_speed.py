"""Seconds per slice of an exported network: PyTorch, onnxruntime (Python) and ONNX Runtime Java.

Usage (from the repository root)::

    python benchmarks/onnx_speed.py --out benchmarks/results/onnx-speed [--java-jar JAR]

For each network (the shipped prior ``brain-2d``, a MoDL, and PGD and VarNet at the config's
default sizes, untrained: speed does not depend on the weights) the checkpoint is exported with
``gleam export`` (its time recorded), then one slice (B=1) at each size (``coils x height x
width``: 8 x 256 x 256 and 16 x 320 x 320 by default; a phantom, birdcage coil maps, a 4x line
mask) is reconstructed by the same graph in PyTorch (:class:`ReconstructionGraph`, with
``torch.no_grad``) and in onnxruntime, alternately, after one warm-up each; the median of
``--repeats`` runs is reported, with the largest relative difference of the images. With
``--java-jar`` the Java engine's ``bench`` command times the same model and sizes in the same
run. Both engines use every core of the machine (torch's and onnxruntime's defaults). Writes
``OUT/results.json`` and ``OUT/table.md``; times are of this machine only, ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gleam_mri.config import config_to_dict
from gleam_mri.fft import fftnc
from gleam_mri.inference import load_run
from gleam_mri.inference.priors import prior_path
from gleam_mri.onnx.export import export_checkpoint
from gleam_mri.onnx.graph import INPUTS, ReconstructionGraph
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.training.checkpoint import save_checkpoint
from gleam_mri.training.run import build_model_for
from gleam_mri.training.run_config import config_from_dict

NETWORKS = {  # name -> model section (None: the shipped prior brain-2d)
    "prior brain-2d (MoDL)": None,
    "pgd (defaults)": {"name": "pgd"},
    "varnet (defaults)": {"name": "varnet"},
}


def checkpoint(model: dict | None, folder: Path) -> Path:
    """The checkpoint of a network: the shipped prior, or an untrained one of ``model``."""
    if model is None:
        return prior_path("brain-2d")
    cfg = config_from_dict({"model": model})
    net = build_model_for(cfg, "2d", torch.device("cpu"))
    config = config_to_dict(cfg)
    path = folder / f"{model['name']}.pt"
    state = {"step": 0, "kind": "2d", "config": config, "model_config": config["model"]}
    return save_checkpoint(path, {**state, "model": net.state_dict()})


def inputs(coils: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """One slice: a phantom seen by birdcage coils under a 4x line mask (8 % centre), so that
    MoDL's conjugate gradient converges in PyTorch as on a scan (it stops at its tolerance;
    the exported graph runs every iteration, and the ONNX engines' times do not depend on the
    values, which the Java engine's bench draws at random)."""
    mask = torch.zeros(1, 1, 1, width)
    mask[..., ::4] = 1
    centre = max(2, round(0.08 * width))
    mask[..., width // 2 - centre // 2 : width // 2 - centre // 2 + centre] = 1
    image = torch.from_numpy(phantom_2d((height, width), np.random.default_rng(0)))
    maps = birdcage_maps(coils, (height, width))[None].to(torch.complex64)
    kspace = fftnc(maps * image.to(torch.complex64), 2) * mask
    return torch.view_as_real(kspace), mask, torch.view_as_real(maps)


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def java_seconds(jar: Path, model: Path, size: tuple[int, int, int], repeats: int) -> float:
    """The Java engine's median seconds per slice (``java -jar JAR bench MODEL C H W N``)."""
    coils, height, width = size
    args = ["java", "-jar", str(jar), "bench", str(model), str(coils), str(height), str(width)]
    done = subprocess.run([*args, str(repeats)], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["median_seconds"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--sizes", nargs="+", default=["8x256x256", "16x320x320"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--java-jar", type=Path, default=None, help="the Java engine's gleam.jar")
    args = parser.parse_args(argv)
    import onnxruntime

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in NETWORKS.items():
            ckpt = checkpoint(model, Path(tmp))
            start = time.perf_counter()
            onnx_file = export_checkpoint(ckpt, Path(tmp) / f"{len(rows)}.onnx").path
            export_seconds = time.perf_counter() - start
            run, _ = load_run(ckpt, "cpu")
            graph = ReconstructionGraph(run.net.eval(), 2)
            session = onnxruntime.InferenceSession(
                str(onnx_file), providers=["CPUExecutionProvider"]
            )
            for size in sizes:
                feeds = inputs(*size)
                with torch.no_grad():
                    torch_s, expected = timed(lambda g=graph, f=feeds: g(*f), args.repeats)
                numpy_feeds = {k: v.numpy() for k, v in zip(INPUTS, feeds, strict=True)}
                onnx_s, (got,) = timed(
                    lambda s=session, f=numpy_feeds: s.run(None, f), args.repeats
                )
                expected = expected.numpy()
                row = {
                    "network": label,
                    "coils x H x W": "x".join(map(str, size)),
                    "export_s": export_seconds,
                    "pytorch_s": torch_s,
                    "onnxruntime_s": onnx_s,
                    "speedup_onnxruntime": torch_s / onnx_s,
                    "max_relative_difference": float(
                        np.abs(got - expected).max() / np.abs(expected).max()
                    ),
                }
                if args.java_jar is not None:
                    row["java_s"] = java_seconds(args.java_jar, onnx_file, size, args.repeats)
                    row["speedup_java"] = torch_s / row["java_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": sys.version.split()[0],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    java = args.java_jar is not None
    head = "| network | C x H x W | export s | PyTorch s | onnxruntime s | ratio |"
    head += " Java s | ratio |" if java else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (
            f"| {r['network']} | {r['coils x H x W']} | {r['export_s']:.0f} | "
            f"{r['pytorch_s']:.3f} | {r['onnxruntime_s']:.3f} | {r['speedup_onnxruntime']:.2f}x |"
        )
        if java:
            line += f" {r['java_s']:.3f} | {r['speedup_java']:.2f}x |"
        lines.append(line)
    note = f"\nOne run on {machine['cores']} cores ({machine['cpu']}); ratio: PyTorch s / engine s."
    (args.out / "table.md").write_text("\n".join(lines) + "\n" + note + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
