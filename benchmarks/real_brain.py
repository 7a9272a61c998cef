"""Real 2D brain: classical baselines (zero-filled, CG-SENSE, BART l1-wavelet CS) on real k-space.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    python benchmarks/real_brain.py --out benchmarks/results/real-brain
    python benchmarks/real_brain.py --out benchmarks/results/real-brain --maps-study

Data (``../shared/data``, or ``$GLEAM_SHARED_DATA``): the fully sampled 16-coil FLASH brain
``real_fullysampled/pulseq_flash2d_brain_16ch.h5`` (128 x 128), undersampled retrospectively with
fastMRI's random line mask (fixed seed) at each acceleration; metrics (fastMRI NMSE / PSNR / SSIM,
:mod:`gleam_mri.metrics`) of the magnitude against the file's ``reconstruction_rss``, full size.
``brain8ch_poisson_R8.npy`` (8 coils, Poisson-disc ~8x, no reference) is reconstructed with the
same methods for self-consistency only: the data residual ``||M F S x - y|| / ||y||`` on the
measured samples (low is consistent, not necessarily good: an unregularised fit has ~0).

Plugging in a method: a method is ``method(case: Case) -> image``, the image ``(H, W)`` complex
(preferred: gives the residual) or real magnitude, torch or numpy, on the scale of
``case.kspace``: k-space divided by ``case.scale = max |A^H y|`` (the project's normalisation, as
in :class:`~gleam_mri.data.datasets.SliceDataset`). ``case.batch()`` is the same scan as a B = 1
:class:`~gleam_mri.data.batch.MRIBatch` for networks, ``case.write_h5(path)`` an undersampled
fastMRI-layout file (line masks) for ``gleam adapt FILE``. Add it to the dict of
:func:`default_methods` and call :func:`run`; every method sees the same k-space and maps.

Defaults, chosen by ``--maps-study`` (``benchmarks/results/real-brain/maps_study.md``):

* Centre: the issue's 8 % (10 lines at W = 128; 11 calibrated at 4x where a random line touches
  it) at 4x and 8x. A larger centre at the same acceleration (24 lines at 4x, 12 at 8x) costs
  outer lines and gave every oracle CS setting a lower PSNR (4x: 27.35 vs 28.25 dB).
* Coil maps: the project's ESPIRiT (:func:`~gleam_mri.data.datasets.espirit_estimate`), kernel 4,
  crop 0.8 (BART's default crop; :data:`DEFAULT_MAPS`), for every method, BART ``pics``
  included (maps given as a CFL, no ``ecalib`` of its own), so differences come from the
  reconstruction. Kernel 6 fails with 10 lines (project crop 0.95: 32 % coverage, CS 20.9 dB;
  ``bart ecalib`` defaults: 24.3 dB). Uncropped maps (crop 0) score 1.3 dB higher at 4x only
  because they reproduce the noisy background of the RSS reference; not the default.
* BART CS: ``bart pics -S -i 100 -R W:3:0:LAMBDA -p MASK`` (l1-wavelet over READ and PHS1; BART's
  own data scaling, ``-S`` puts the image back on the input's scale; 300 iterations change PSNR
  by < 0.02 dB). Reported at the fixed ``LAMBDA = 0.01`` (BART's usual example value) and
  oracle-tuned: the best PSNR against the reference over :data:`CS_GRID`, an upper bound for CS
  and the conservative choice when a method is claimed to beat it. CG-SENSE (Tikhonov, 100 CG
  iterations) likewise: fixed ``lam = 0.01`` and oracle over :data:`CG_GRID`. ``pics`` returns
  -1 times our image per axis of size 2 mod 4 (the 230-line scan); :func:`bart_cs` undoes it.
* Seconds: wall time of the method alone (maps estimation, shared, is ``maps_seconds``; an
  oracle row: one run at its lambda). BART runs with ``OMP_WAIT_POLICY=PASSIVE``: spinning
  OpenMP threads made it ~10x slower on a busy 2-core machine; set it for torch too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.cfl import cfl_to_gleam, gleam_to_cfl, read_cfl, write_cfl
from gleam_mri.data.datasets import espirit_estimate
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.fft import ifftnc
from gleam_mri.metrics import volume_metrics
from gleam_mri.physics.espirit import find_calibration_size
from gleam_mri.physics.masks import acceleration_of, build_mask_func
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense, zero_filled
from gleam_mri.recon.cs import choose_lambda, heldout_items, l1_wavelet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_brain_report import table_md, write_results

SHARED = Path(
    os.environ.get("GLEAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BRAIN16 = "real_fullysampled/pulseq_flash2d_brain_16ch.h5"
BRAIN8 = "brain8ch_poisson_R8.npy"
CG_LAM, CS_LAM = 1e-2, 1e-2  # fixed defaults
CG_GRID = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CS_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CG_ITERS, CS_ITERS = 100, 100

Image = torch.Tensor | np.ndarray
Method = Callable[["Case"], Image]


@dataclass(frozen=True)
class Maps:
    """Coil-map estimation: ``tool`` "espirit" (the project's), "bart" (``ecalib -m1``) or a
    method of ``gleam adapt --maps`` ("adapt-auto", "adapt-jsense", "adapt-espirit": kernel and
    crop are then its own)."""

    tool: str = "espirit"
    kernel: int = 4
    crop: float = 0.8
    calib: int = 24  # the project's ESPIRiT: largest calibration region per axis

    @property
    def label(self) -> str:
        if self.tool.startswith("adapt-"):
            return f"gleam adapt --maps {self.tool.removeprefix('adapt-')}"
        extra = "" if self.calib == 24 else f" calib {self.calib}"
        return f"{self.tool} k{self.kernel} crop {self.crop:g}{extra}"


DEFAULT_MAPS = Maps()


@dataclass
class Case:
    """One undersampled scan, normalised by ``scale = max |A^H y|``.

    ``kspace`` complex64 ``(C, H, W)`` (masked, divided by ``scale``); ``mask`` float32
    ``(1, 1, W)`` or ``(1, H, W)``; ``maps`` complex64 ``(C, H, W)``; ``reference`` float
    ``(H, W)`` magnitude divided by ``scale`` (``None``: no fully sampled reference).
    """

    name: str
    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    reference: np.ndarray | None
    scale: float
    acceleration: float
    info: dict[str, Any] = field(default_factory=dict)

    def op(self) -> SenseOp:
        """The SENSE operator ``M F S`` of the case (batch axis of 1)."""
        return SenseOp(self.maps[None], self.mask[None], fft_ndim=2)

    def batch(self) -> MRIBatch:
        """The case as a B = 1 :class:`MRIBatch` (already normalised, ``scale`` kept)."""
        target = None if self.reference is None else torch.from_numpy(self.reference)[None]
        return MRIBatch(
            kspace=self.kspace[None],
            mask=self.mask[None],
            maps=self.maps[None],
            target=None if target is None else target.float(),
            scale=torch.tensor([self.scale], dtype=torch.float32),
            meta=[{"fname": self.name, **self.info}],
        )

    def write_h5(self, path: str | Path) -> Path:
        """The undersampled scan on its raw scale as a fastMRI-layout file (line masks only)."""
        if self.mask.shape[-2] != 1:
            raise ValueError(f"{self.name}: fastMRI files hold line masks, not {self.mask.shape}")
        target = None if self.reference is None else self.reference[None] * self.scale
        kspace = (self.kspace * self.scale)[None]
        return write_fastmri(path, kspace, target, mask=self.mask.reshape(-1))


def estimate_maps(
    kspace: torch.Tensor, mask: torch.Tensor, maps: Maps
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Coil maps ``(C, H, W)`` from masked k-space ``(C, H, W)`` and mask ``(1, 1|H, W)``, and
    what was chosen (``gleam adapt``'s methods: the estimator and its held-out losses)."""
    if maps.tool == "espirit":
        k = maps.kernel
        return espirit_estimate(
            kspace, mask, 2, kernel_size=(k, k), crop=maps.crop, max_calib_size=maps.calib
        ), {}
    if maps.tool.startswith("adapt-"):
        from gleam_mri.recon.coil_maps import maps_estimator

        chooser = maps_estimator(maps.tool.removeprefix("adapt-"))
        estimated = chooser(kspace, mask, 2)  # the chooser finds the measured samples
        choice = chooser.choices[-1]
        return estimated, {"maps_chosen": choice.chosen, "maps_losses": choice.losses}
    if maps.tool != "bart":
        raise ValueError(f"unknown maps tool {maps.tool!r}; expected 'espirit' or 'bart'")
    with tempfile.TemporaryDirectory() as tmp:
        write_cfl(Path(tmp) / "ksp", gleam_to_cfl(kspace.numpy()))
        k, c = str(maps.kernel), str(maps.crop)
        _bart(tmp, "ecalib", "-m1", "-k", f"{k}:{k}:1", "-c", c, "ksp", "maps")
        return torch.from_numpy(cfl_to_gleam(read_cfl(Path(tmp) / "maps"))), {}


def _finish(name: str, kspace, mask, reference, maps: Maps, info: dict[str, Any]) -> Case:
    """Estimate maps, normalise by ``max |A^H y|``, record calibration size and maps coverage."""
    start = time.perf_counter()
    s, chosen = estimate_maps(kspace, mask, maps)
    info = {
        **info,
        **chosen,
        "calib_lines": find_calibration_size(mask, shape=kspace.shape[1:])[-1],
        "maps": maps.label,
        "maps_seconds": time.perf_counter() - start,
        "maps_coverage": float((s.abs().pow(2).sum(0) > 0.5).mean(dtype=torch.float32)),
    }
    scale = float(zero_filled(SenseOp(s[None], mask[None]), kspace[None]).abs().max())
    ref = None if reference is None else np.asarray(reference, dtype=np.float64) / scale
    return Case(name, kspace / scale, mask, s, ref, scale, acceleration_of(mask), info)


def undersampled_case(
    path: str | Path = SHARED / BRAIN16,
    acceleration: float = 4,
    center_fraction: float = 0.08,
    seed: int = 0,
    maps: Maps = DEFAULT_MAPS,
) -> Case:
    """The fully sampled 2D file (first slice) undersampled by fastMRI's random line mask."""
    vol = read_fastmri(path, slices=0)
    full = torch.from_numpy(vol.kspace[0])  # (C, H, W)
    spec = {
        "name": "random",
        "center_fractions": [center_fraction],
        "accelerations": [acceleration],
    }
    mask = build_mask_func(spec)(tuple(full.shape), seed)  # (1, 1, W)
    lines = round(center_fraction * full.shape[-1])
    info = {"file": Path(path).name, "seed": seed, "center_lines": lines}
    case = _finish(f"R{acceleration:g}", full * mask, mask, vol.reconstruction_rss[0], maps, info)
    # what the maps alone allow: the fully sampled scan combined with them
    ceiling = zero_filled(SenseOp(case.maps[None]), full[None] / case.scale)[0].abs().numpy()
    case.info["maps_ceiling_psnr"] = volume_metrics(case.reference, ceiling)["PSNR"]
    return case


def poisson_case(path: str | Path = SHARED / BRAIN8, maps: Maps = DEFAULT_MAPS) -> Case:
    """The Poisson-disc scan ``(C, H, W)`` as measured; mask = nonzero samples, no reference."""
    kspace = torch.from_numpy(np.load(path)).to(torch.complex64)
    mask = (kspace.abs().sum(0, keepdim=True) > 0).float()  # (1, H, W)
    return _finish("poisson", kspace, mask, None, maps, {"file": Path(path).name})


# ----------------------------------------------------------------------------------- methods


def _bart(cwd: str | Path, *args: str) -> str:
    # OpenMP threads that spin while waiting slow BART ~10x on a busy 2-core machine
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    args = ("bart", *args)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def have_bart() -> bool:
    return shutil.which("bart") is not None


def bart_cs(case: Case, lam: float = CS_LAM, iters: int = CS_ITERS) -> torch.Tensor:
    """``bart pics -S -R W:3:0:lam`` with the case's maps and mask -> complex ``(H, W)``."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        write_cfl(cwd / "ksp", gleam_to_cfl(case.kspace.numpy()))
        write_cfl(cwd / "maps", gleam_to_cfl(case.maps.numpy()))
        write_cfl(cwd / "pat", case.mask[0].expand(case.kspace.shape[1:]).numpy())  # (H, W)
        reg = f"W:3:0:{lam:g}"
        _bart(cwd, "pics", "-S", "-i", str(iters), "-R", reg, "-p", "pat", "ksp", "maps", "rec")
        image = torch.from_numpy(read_cfl(cwd / "rec").reshape(case.kspace.shape[1:]))
    # pics's image is -1 times ours per axis of size 2 mod 4 (BART's fftmod; measured)
    return image * (-1) ** sum(n % 4 == 2 for n in image.shape)


def cg_sense_method(case: Case, lam: float = CG_LAM, iters: int = CG_ITERS) -> torch.Tensor:
    """CG-SENSE with Tikhonov weight ``lam`` -> complex ``(H, W)``."""
    return cg_sense(case.op(), case.kspace[None], lam=lam, max_iter=iters, tol=1e-10)[0]


def project_cs(case: Case, lam: float) -> torch.Tensor:
    """The project's l1-wavelet CS (``gleam_mri.recon.cs``, sigpy) at weight ``lam``."""
    return l1_wavelet(case.batch(), lam)[0]


def project_cs_heldout(case: Case) -> tuple[torch.Tensor, dict[str, float]]:
    """The project's CS with its weight chosen on held-out lines, no reference (``gleam baseline
    --methods cs``); the chosen weight goes into the row."""
    batch = case.batch()
    choice = choose_lambda(heldout_items([batch]))
    return l1_wavelet(batch, choice.lam)[0], {"lam": choice.lam}


def default_methods(bart: bool | None = None) -> dict[str, Method]:
    """The classical methods at their fixed defaults; BART's only when ``bart`` is on PATH."""
    methods: dict[str, Method] = {
        "zero-filled": lambda c: zero_filled(c.op(), c.kspace[None])[0],
        "zero-filled RSS": lambda c: ifftnc(c.kspace, 2).abs().pow(2).sum(0).sqrt(),
        f"CG-SENSE lam={CG_LAM:g}": cg_sense_method,
        "CS (project), held-out": project_cs_heldout,
    }
    if have_bart() if bart is None else bart:
        methods[f"BART CS lam={CS_LAM:g}"] = bart_cs
    return methods


def default_sweeps(bart: bool | None = None) -> dict[str, tuple[Callable[..., Image], tuple]]:
    """Oracle rows: ``name -> (method(case, lam), grid)``."""
    sweeps: dict[str, tuple[Callable[..., Image], tuple]] = {"CG-SENSE": (cg_sense_method, CG_GRID)}
    sweeps["CS (project)"] = (project_cs, CS_GRID)
    if have_bart() if bart is None else bart:
        sweeps["BART CS"] = (bart_cs, CS_GRID)
    return sweeps


# ----------------------------------------------------------------------------------- running


def score(case: Case, image: Image) -> dict[str, float | None]:
    """Metrics of one image ``(H, W)``: NMSE/PSNR/SSIM (with a reference), data residual."""
    x = torch.as_tensor(image)
    out: dict[str, float | None] = {"residual": None}
    if torch.is_complex(x):
        y = case.kspace[None]
        out["residual"] = float((case.op()(x[None].to(torch.complex64)) - y).norm() / y.norm())
    if case.reference is not None:
        out.update(volume_metrics(case.reference, x.abs().double().numpy()))
    return out


@dataclass
class Results:
    """Table rows (one dict per case and method), lambda sweeps and magnitude images ``(H, W)``."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    sweeps: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    images: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)


def _timed(method: Callable[..., Image], case: Case, *args: Any) -> tuple[Image, float]:
    start = time.perf_counter()
    image = method(case, *args)
    return image, time.perf_counter() - start


def run(
    methods: dict[str, Method],
    cases: list[Case],
    sweeps: dict[str, tuple[Callable[..., Image], tuple]] | None = None,
) -> Results:
    """Run every method (and every sweep value) on every case; oracle rows need a reference."""
    res = Results()
    for case in cases:
        res.cases[case.name] = {"acceleration": case.acceleration, "scale": case.scale, **case.info}
        images = res.images.setdefault(case.name, {})
        for name, method in methods.items():
            image, seconds = _timed(method, case)
            image, extra = image if isinstance(image, tuple) else (image, {})  # e.g. a chosen lam
            row = {"case": case.name, "method": name, **extra, **score(case, image)}
            res.rows.append({**row, "seconds": seconds})
            images[name] = torch.as_tensor(image).abs().numpy()
        if case.reference is None:
            continue
        for name, (method, grid) in (sweeps or {}).items():
            curve, best, best_image = [], None, None
            for lam in grid:
                image, seconds = _timed(method, case, lam)
                point = {"lam": lam, **score(case, image), "seconds": seconds}
                curve.append(point)
                if best is None or point["PSNR"] > best["PSNR"]:
                    best, best_image = point, image
            res.sweeps.setdefault(case.name, {})[name] = curve
            res.rows.append({"case": case.name, "method": f"{name} oracle", **best})
            images[f"{name} oracle"] = torch.as_tensor(best_image).abs().numpy()
    return res


# ----------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> Results | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real-brain"))
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument(
        "--maps",
        default=f"{DEFAULT_MAPS.tool}:{DEFAULT_MAPS.kernel}:{DEFAULT_MAPS.crop:g}",
        help="TOOL:KERNEL:CROP, TOOL espirit or bart; or adapt-auto, adapt-jsense, adapt-espirit "
        "(gleam adapt's maps; KERNEL and CROP ignored, e.g. adapt-auto:0:0)",
    )
    parser.add_argument("--no-poisson", action="store_true", help="skip the Poisson-disc scan")
    parser.add_argument(
        "--maps-study",
        action="store_true",
        help="measure centre size and maps instead (maps_study.md/.json)",
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/real_brain.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    bart = have_bart()
    note = "" if bart else "Note: `bart` is not on PATH; the BART CS rows are skipped."
    print(note)
    if args.maps_study:
        from real_brain_maps import write_maps_study  # beside this file

        write_maps_study(args.out, args.accelerations, args.seed, bart, command)
        return None
    tool, kernel, crop = args.maps.split(":")
    maps = Maps(tool, int(kernel), float(crop))
    cases = [
        undersampled_case(SHARED / BRAIN16, a, args.center_fraction, args.seed, maps)
        for a in args.accelerations
    ]
    if not args.no_poisson:
        cases.append(poisson_case(SHARED / BRAIN8, maps))
    res = run(default_methods(bart), cases, default_sweeps(bart))
    write_results(args.out, res, cases, command, note)
    print(table_md(res))
    return res


if __name__ == "__main__":
    main()
