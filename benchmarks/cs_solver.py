"""The project's l1-wavelet CS against BART's ``pics`` at each one's best weight, on the real brain.

Usage (from the repository root, ``bart`` on the PATH, ``../shared/data`` present)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/cs_solver.py --out benchmarks/results/cs-solver

The 16-coil FLASH brain (``real_brain.undersampled_case``: 1D random lines, 8 % centre) at 4x and
8x, mask seeds 0-2, with the maps ``gleam adapt`` chooses for every solver. Each solver runs at
every weight of :data:`GRID` and its best PSNR against the reference is kept (the oracle weight:
this compares solvers, not weight choices). Solvers: BART ``pics -R W:3:0:lam`` (100 iterations,
its own data scaling), sigpy's ``L1WaveletRecon`` (Daubechies-4, one fixed wavelet grid, every
band thresholded: the project's solver before cycle spinning), and the project's
:func:`gleam_mri.recon.cs.l1_wavelet`. The project's weight chosen on held-out lines (no
reference, as ``gleam adapt`` and ``gleam baseline --methods cs`` choose it) is reported as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_brain as rb  # cases and BART

from gleam_mri.metrics import volume_metrics
from gleam_mri.recon.cs import ITERATIONS, choose_lambda, heldout_items, l1_wavelet

GRID = (1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2)


def sigpy_l1_wavelet(case: rb.Case, lam: float) -> np.ndarray:
    """sigpy's ``L1WaveletRecon`` (its defaults, the step of the project's solver)."""
    from sigpy.mri.app import L1WaveletRecon

    maps = case.maps.to(torch.complex64).numpy()
    mask = case.mask[0].expand(case.kspace.shape[1:]).numpy().astype(np.float32)
    step = 1.0 / float((np.abs(maps) ** 2).sum(axis=0).max())
    app = L1WaveletRecon(
        case.kspace.numpy(),
        maps,
        lam,
        weights=mask,
        max_iter=ITERATIONS,
        alpha=step,
        show_pbar=False,
    )
    return app.run()


SOLVERS = {
    "BART pics": lambda case, lam: rb.bart_cs(case, lam).numpy(),
    "sigpy L1WaveletRecon": sigpy_l1_wavelet,
    "project CS": lambda case, lam: rb.project_cs(case, lam).numpy(),
}


def psnr(case: rb.Case, image: np.ndarray) -> float:
    return float(volume_metrics(case.reference, np.abs(image))["PSNR"])


def run_case(acceleration: float, seed: int) -> dict:
    """Every solver's PSNR at every weight, and the project's held-out choice, for one mask."""
    case = rb.undersampled_case(
        rb.SHARED / rb.BRAIN16, acceleration, 0.08, seed, rb.Maps("adapt-auto")
    )
    sweeps = {
        name: {f"{lam:g}": psnr(case, solve(case, lam)) for lam in GRID}
        for name, solve in SOLVERS.items()
    }
    choice = choose_lambda(heldout_items([case.batch()]))
    chosen = psnr(case, l1_wavelet(case.batch(), choice.lam)[0].numpy())
    print(
        f"R{acceleration:g} seed {seed}: "
        + ", ".join(f"{name} {max(s.values()):.2f}" for name, s in sweeps.items())
        + f", project CS held-out lam {choice.lam:g} {chosen:.2f}",
        flush=True,
    )
    return {
        "R": acceleration,
        "seed": seed,
        "sweeps": sweeps,
        "heldout_lam": choice.lam,
        "heldout_psnr": chosen,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| R | "
        + " | ".join(f"{n} (best weight)" for n in SOLVERS)
        + " | project CS (held-out weight) |",
        "|---" * (len(SOLVERS) + 2) + "|",
    ]
    for r in sorted({row["R"] for row in rows}):
        cases = [row for row in rows if row["R"] == r]
        best = [np.mean([max(c["sweeps"][n].values()) for c in cases]) for n in SOLVERS]
        held = np.mean([c["heldout_psnr"] for c in cases])
        lines.append(f"| {r:g}x | " + " | ".join(f"{b:.2f}" for b in best) + f" | {held:.2f} |")
    return "\n".join(lines) + f"\n\nPSNR (dB), means over mask seeds 0-{len(cases) - 1}.\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, table.md")
    parser.add_argument("--seeds", type=int, default=3, help="mask seeds 0..N-1 (default 3)")
    args = parser.parse_args(argv)
    if not rb.have_bart() or not (rb.SHARED / rb.BRAIN16).is_file():
        raise SystemExit("needs bart on the PATH and ../shared/data (or $GLEAM_SHARED_DATA)")
    rows = [run_case(r, s) for r in (4, 8) for s in range(args.seeds)]
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/cs_solver.py " + " ".join(argv or sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    (args.out / "table.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
