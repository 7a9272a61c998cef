"""Train the 2D brain prior shipped with the package (``gleam_mri/priors/brain-2d.pt``).

Usage (from the repository root, the project installed with its ``anatomy`` extra,
``../shared/data`` present for Colin27 and the real coil maps)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_prior.py --work runs/prior

1. Simulation (``gleam simulate``), 128 x 128 slices of two real T1 heads: Colin27
   (``../shared/data/colin27_t1.nii.gz``) and the MNI152 2009a template inside nilearn, with the
   coil maps of a real 8-coil brain scan (``brain8ch_poisson_R8.npy``, ESPIRiT, fitted and
   perturbed per slice) and noise at the SNR measured on it. The real fully sampled scans that
   ``benchmarks/real_scans.py`` tests on are not used: those heads, coils and noise stay out.
2. Supervised training (``gleam train``) of ``gleam adapt``'s default network (MoDL, 6
   iterations, ResNet 16 x 3 blocks, 6 CG steps, greedy over its iterations), so that ``gleam
   adapt`` fine-tunes it on a scan; masks of the real scans' family (random lines, 8 % centre,
   4x and 8x). The weights of the best validation are kept.
3. Export: the network, its config and kind, where it came from and its PSNR on the fixed
   simulated check slice (:func:`gleam_mri.inference.priors.check_psnr`), which the tests
   recompute.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gleam_mri.adapt.zero_shot import DEFAULT_CONFIG
from gleam_mri.inference.priors import PRIORS_DIR, export_prior

SHARED = Path(
    os.environ.get("GLEAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
COILS = "brain8ch_poisson_R8.npy"
# (folder, --anatomy, files, seed): Colin27 from ../shared, MNI152 from nilearn
HEADS = (
    ("colin27", str(SHARED / "colin27_t1.nii.gz"), 24, 1),
    ("mni152", "mni152", 24, 2),
)
MASK = {"name": "random", "center_fractions": [0.08, 0.08], "accelerations": [4, 8]}


def gleam(*args: str) -> None:
    """Run a gleam command, failing loudly."""
    command = [sys.executable, "-m", "gleam_mri.cli", *args]
    print("$ gleam " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def simulate(work: Path, slices: int) -> Path:
    """Simulated heads merged into ``work/data/{train,val,test}`` (files prefixed by head)."""
    data = work / "data"
    for head, anatomy, files, seed in HEADS:
        folder = work / "sim" / head
        if not (folder / "train").is_dir():
            gleam(
                "simulate", str(folder), "--kind", "2d", "--n", str(files), "--slices",
                str(slices), "--shape", "128x128", "--anatomy", anatomy, "--coils-from",
                str(SHARED / COILS), "--snr", "measured", "--seed", str(seed), "--quiet",
            )  # fmt: skip
        for split in ("train", "val", "test"):
            (data / split).mkdir(parents=True, exist_ok=True)
            for file in sorted((folder / split).glob("*.h5")):
                target = data / split / f"{head}_{file.name}"
                if not target.exists():
                    shutil.copyfile(file, target)
    return data


def config(work: Path, data: Path, steps: int) -> Path:
    """``gleam adapt``'s default network, supervised on the simulated heads."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg["name"] = "prior-brain-2d"
    cfg["data"] = {"root": str(data), "kind": "2d", "mask": MASK, "maps": "file",
                   "batch_size": 2, "max_val_items": 32}  # fmt: skip
    cfg["train"] = {"supervision": "target", "loss": "l1", "steps": steps, "val_every": 100,
                    "ckpt_every": 100, "log_every": 20, "keep": "best", "device": "auto",
                    "out_dir": str(work / "train"), "tensorboard": False, "seed": 0}  # fmt: skip
    cfg.pop("ssdu")
    path = work / "prior.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and training")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--slices", type=int, default=8, help="slices per simulated file")
    parser.add_argument(
        "--out", type=Path, default=PRIORS_DIR / "brain-2d.pt", help="where to write the prior"
    )
    args = parser.parse_args(argv)
    if not (SHARED / COILS).is_file():
        raise SystemExit(f"needs {SHARED / COILS} (../shared/data or $GLEAM_SHARED_DATA)")
    data = simulate(args.work, args.slices)
    cfg = config(args.work, data, args.steps)
    gleam("train", str(cfg), "--quiet")
    command = "python benchmarks/train_prior.py " + " ".join(argv or sys.argv[1:])
    sources = {
        "anatomy": ["Colin27 (colin27_t1.nii.gz)", "MNI152 2009a template (nilearn)"],
        "coil_maps_and_noise": f"{COILS} (real 8-coil brain scan, ESPIRiT, perturbed per slice)",
        "mask": MASK,
        "command": command,
    }
    meta = export_prior(args.work / "train" / "best.pt", args.out, "brain-2d", sources)
    print(f"wrote {args.out}: check-slice PSNR {meta['check_psnr']:.2f} dB")


if __name__ == "__main__":
    main()
