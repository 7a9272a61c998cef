"""The three engines on a real scan: PyTorch, onnxruntime (Python) and ONNX Runtime Java.

Usage (from the repository root, after ``bash java/build.sh``)::

    python benchmarks/onnx_equality.py --out benchmarks/results/onnx-equality

The real fully sampled brain of ``../shared/data`` (16 coils) is undersampled with fastMRI's
random lines (4x, 8 % centre, seed 0) and given ESPIRiT maps (``gleam convert --maps espirit``),
then reconstructed by each network of ``benchmarks/onnx_speed.py`` (the shipped prior, PGD and
VarNet at the config's defaults) with ``gleam recon CKPT --no-undersample`` (PyTorch), ``gleam
recon MODEL.onnx`` (onnxruntime) and ``java -jar gleam.jar recon MODEL.onnx`` (Java): the largest
difference of each ONNX engine's ``reconstruction`` from PyTorch's, relative to its peak (the
issue's target: at most 1e-4). Writes ``OUT/results.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_speed import NETWORKS, checkpoint

from gleam_mri import cli
from gleam_mri.data.convert import with_espirit_maps
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.physics.masks import build_mask_func

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT.parent / "shared" / "data" / "real_fullysampled" / "pulseq_flash2d_brain_16ch.h5"
JAR = ROOT / "java" / "gleam-engine" / "target" / "gleam.jar"
MASK = {"name": "random", "center_fractions": [0.08], "accelerations": [4]}


def undersampled_with_maps(scan: Path, folder: Path) -> Path:
    """The scan under a 4x line mask (seed 0), with its mask and ESPIRiT maps."""
    vol = read_fastmri(scan)
    shape = tuple(vol.kspace.shape[1:])
    mask = build_mask_func(MASK)(shape, 0).numpy().reshape(-1)  # (W,)
    masked = write_fastmri(
        folder / "masked.h5", vol.kspace * mask, vol.reconstruction_rss, mask=mask
    )
    return with_espirit_maps(masked, folder / "brain.h5")


def reconstruction(folder: Path) -> np.ndarray:
    with h5py.File(folder / "brain.h5") as hf:
        return hf["reconstruction"][()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    if not SCAN.is_file():
        raise SystemExit(f"{SCAN}: the real scan is absent (../shared/data)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scan = undersampled_with_maps(SCAN, tmp)
        for k, (label, model) in enumerate(NETWORKS.items()):
            ckpt = checkpoint(model, tmp)
            onnx_file = tmp / f"{k}.onnx"
            assert cli.main(["export", str(ckpt), "-o", str(onnx_file)]) == 0
            outs = {name: tmp / f"{k}-{name}" for name in ("torch", "onnx", "java")}
            for name, source in (("torch", ckpt), ("onnx", onnx_file)):
                run = ["recon", str(source), str(scan), "-o", str(outs[name]), "--formats", "h5"]
                assert cli.main([*run, "--no-undersample"]) == 0
            java = ["java", "-jar", str(JAR), "recon", str(onnx_file), str(scan), "-o"]
            subprocess.run([*java, str(outs["java"]), "--formats", "h5", "-q"], check=True)
            expected = reconstruction(outs["torch"])
            peak = float(np.abs(expected).max())
            row = {"network": label, "shape": list(expected.shape)}
            for name in ("onnx", "java"):
                got = reconstruction(outs[name])
                row[f"{name}_max_relative_difference"] = float(np.abs(got - expected).max() / peak)
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"scan": SCAN.name, "rows": rows}, indent=1))
    lines = ["| network | onnxruntime vs PyTorch | Java vs PyTorch |", "|---|---|---|"]
    for r in rows:
        onnx, java = r["onnx_max_relative_difference"], r["java_max_relative_difference"]
        lines.append(f"| {r['network']} | {onnx:.1e} | {java:.1e} |")
    note = f"\n{SCAN.name}, 4x random lines (8 % centre, seed 0), ESPIRiT maps."
    (args.out / "table.md").write_text("\n".join(lines) + "\n" + note + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
