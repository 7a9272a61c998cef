"""Where ESPIRiT's coil maps fail with few central lines, and what JSENSE and the choice buy.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/coil_maps.py --out benchmarks/results/coil-maps

Cases (8 central lines unless said, fastMRI's random line mask, mask seeds ``--seeds``):

- ``phantom 128``: the built-in head phantom, 128 x 128, 8 simulated coils, SNR 30 dB, the head
  inside the field of view;
- ``phantom 96, reduced FOV``: the same head zoomed 1.4x into a 96 x 96 field of view, so that
  it reaches the edges (the reduced-FOV scans where ESPIRiT collapsed in the issue);
- ``real brain``: the real 16-coil FLASH brain of ``../shared/data`` (8 % centre = 10 lines).

Every set of maps is scored by the CG-SENSE image it gives (Tikhonov 1e-3 on data normalised to
``max |k| = 1``, 50 iterations; PSNR of the magnitude, least-squares scaled, against the
simulated target or the file's RSS): the true maps (simulation), ``gleam adapt``'s ESPIRiT
(calibration up to 64 samples, no crop), JSENSE (sigpy, coil kernels of 8), BART's ``nlinv``
maps (the issue's reference; skipped without ``bart``) and the maps ``gleam adapt --maps auto``
chooses on held-out lines (no reference). Writes ``coil_maps.json`` and ``coil_maps.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from gleam_mri.data.cfl import cfl_to_gleam, gleam_to_cfl, read_cfl, write_cfl
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.metrics import psnr
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.physics.operators import SenseOp
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.physics.simulate import simulate_multicoil
from gleam_mri.recon.classical import cg_sense
from gleam_mri.recon.coil_maps import ChosenMaps, espirit_measured, jsense_maps

SHARED = Path(
    os.environ.get("GLEAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BRAIN = SHARED / "real_fullysampled" / "pulseq_flash2d_brain_16ch.h5"


def phantom(n: int, zoom: float, seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Fully sampled k-space ``(8, n, n)``, its true maps and its target ``(n, n)``."""
    rng = np.random.default_rng(seed)
    image = phantom_2d((n, n), rng)
    if zoom != 1.0:
        image = ndimage.zoom(image, zoom, order=1)
        start = (image.shape[0] - n) // 2
        image = image[start : start + n, start : start + n]
    acq = simulate_multicoil(image, 8, 2, rng, snr_db=30)
    return torch.from_numpy(acq.kspace), acq.maps, acq.target


def nlinv_maps(kspace: torch.Tensor) -> torch.Tensor:
    """BART ``nlinv -m1`` maps of masked k-space ``(C, H, W)``, normalised to unit RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        write_cfl(Path(tmp) / "k", gleam_to_cfl(kspace.numpy()))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        command = ["bart", "nlinv", "-m1", "k", "img", "sens"]
        subprocess.run(command, cwd=tmp, env=env, check=True, capture_output=True)
        maps = torch.from_numpy(cfl_to_gleam(read_cfl(Path(tmp) / "sens")))
    return maps / (maps.abs().pow(2).sum(0, keepdim=True).sqrt().clamp_min(1e-12))


def cg_psnr(kspace: torch.Tensor, mask: torch.Tensor, maps, target: np.ndarray) -> float:
    """PSNR of CG-SENSE with ``maps`` (module docstring)."""
    maps = torch.as_tensor(maps).to(torch.complex64)
    op = SenseOp(maps[None], mask[None], 2)
    image = cg_sense(op, kspace[None] / kspace.abs().max(), lam=1e-3, max_iter=50)[0]
    magnitude = image.abs().numpy().astype(np.float64)
    gain = (magnitude * target).sum() / max((magnitude * magnitude).sum(), 1e-30)
    return float(psnr(target, gain * magnitude))


def one_case(name: str, full: torch.Tensor, true_maps, target, lines: int, r: float, seed: int):
    """Every set of maps on one undersampled case: a row of PSNRs, seconds and the choice."""
    width = full.shape[-1]
    spec = {"name": "random", "center_fractions": [lines / width], "accelerations": [r]}
    mask = build_mask_func(spec)(tuple(full.shape), seed)  # (1, 1, W)
    kspace, measured = full * mask, mask.expand(1, *full.shape[1:])
    row = {"case": name, "R": r, "seed": seed, "center_lines": lines}
    if true_maps is not None:
        row["true"] = cg_psnr(kspace, mask, true_maps, target)
    estimators = {"espirit": espirit_measured, "jsense": jsense_maps}
    if shutil.which("bart"):
        estimators["bart nlinv"] = lambda k, m, d: nlinv_maps(k)
    chooser = ChosenMaps()
    estimators["chosen"] = chooser
    for label, estimate in estimators.items():
        start = time.perf_counter()
        maps = estimate(kspace, measured, 2)
        row[f"{label} s"] = time.perf_counter() - start
        row[label] = cg_psnr(kspace, mask, maps, target)
    row["choice"] = chooser.choices[-1].chosen
    row["losses"] = chooser.choices[-1].losses
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    rows = []
    for seed in args.seeds:
        for r in (4.0, 8.0):
            full, maps, target = phantom(128, 1.0, seed)
            rows.append(one_case("phantom 128", full, maps, target, 8, r, seed))
            full, maps, target = phantom(96, 1.4, seed)
            rows.append(one_case("phantom 96, reduced FOV", full, maps, target, 8, r, seed))
            if BRAIN.is_file():
                vol = read_fastmri(BRAIN)
                full = torch.from_numpy(vol.kspace[0])
                rss = vol.reconstruction_rss[0].astype(np.float64)
                rows.append(one_case("real brain", full, None, rss, 10, r, seed))
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coil_maps.json").write_text(json.dumps(rows, indent=1) + "\n")
    labels = ["true", "espirit", "jsense", "bart nlinv", "chosen"]
    lines = [
        "`python benchmarks/coil_maps.py " + " ".join(argv or sys.argv[1:]) + "`",
        "",
        "| case | R | seed | " + " | ".join(labels) + " | chosen |",
        "|---" * (len(labels) + 4) + "|",
    ]
    for row in rows:
        cells = " | ".join(f"{row[k]:.2f}" if k in row else "-" for k in labels)
        lines.append(
            f"| {row['case']} | {row['R']:g} | {row['seed']} | {cells} | {row['choice']} |"
        )
    lines.append("")
    for case in dict.fromkeys(r["case"] for r in rows):
        members = [r for r in rows if r["case"] == case]
        means = {k: np.mean([r[k] for r in members]) for k in labels if k in members[0]}
        lines.append(
            f"- {case}, mean of {len(members)}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in means.items())
        )
    (args.out / "coil_maps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
