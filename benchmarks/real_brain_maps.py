"""Real 2D brain: what the calibration centre and the coil maps cost (`--maps-study`).

Every method of :mod:`real_brain` per acceleration, centre size and coil-map estimate (the
project's ESPIRiT and BART's ``ecalib`` at several kernels and crops): PSNR at the fixed lambda and
oracle-tuned, maps coverage and the maps' ceiling (the fully sampled scan combined with them).
Writes ``maps_study.json`` and ``maps_study.md``; ``real_brain.py``'s defaults come from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_brain import (
    BRAIN16,
    SHARED,
    Maps,
    default_methods,
    default_sweeps,
    run,
    undersampled_case,
)

STUDY_MAPS = (
    Maps("espirit", 6, 0.95),  # the project's espirit_maps defaults
    Maps("espirit", 6, 0.8),
    Maps("espirit", 4, 0.8),
    Maps("espirit", 4, 0.0),
    Maps("bart", 6, 0.8),  # ecalib's defaults
    Maps("bart", 4, 0.8),
)
LARGE_CENTRE = {4: 24 / 128, 8: 12 / 128}  # 24 lines at 4x; at 8x (16 lines) at most 12


def maps_study(accelerations: list[float], seed: int, bart: bool) -> list[dict[str, Any]]:
    """PSNR of each method per (acceleration, centre, maps): what the maps and centre cost."""
    rows = []
    methods = {k: v for k, v in default_methods(bart).items() if k != "zero-filled RSS"}
    for accel in accelerations:
        for fraction in sorted({0.08, LARGE_CENTRE.get(int(accel), 0.08)}):
            for maps in STUDY_MAPS if bart else STUDY_MAPS[:4]:
                case = undersampled_case(SHARED / BRAIN16, accel, fraction, seed, maps)
                res = run(methods, [case], default_sweeps(bart))
                psnr = {r["method"]: r["PSNR"] for r in res.rows}
                lam = {r["method"]: r["lam"] for r in res.rows if "lam" in r}
                rows.append({"R": accel, **case.info, "psnr": psnr, "lam": lam})
                print(f"R={accel:g} centre={fraction:.4f} {maps.label}: {psnr}", flush=True)
    return rows


def study_md(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`maps_study` (PSNR in dB, oracle lambda in brackets)."""
    names = list(rows[0]["psnr"])
    lines = [
        "| R | centre (calib) lines | maps | coverage | maps ceiling | " + " | ".join(names) + " |",
        "|---|---|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = [
            f"{r['psnr'][n]:.2f}" + (f" ({r['lam'][n]:g})" if n in r["lam"] else "") for n in names
        ]
        lines.append(
            f"| {r['R']:g} | {r['center_lines']} ({r['calib_lines']}) | {r['maps']} | "
            f"{r['maps_coverage']:.2f} | {r['maps_ceiling_psnr']:.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_maps_study(
    out: Path, accelerations: list[float], seed: int, bart: bool, command: str
) -> list[dict[str, Any]]:
    """Run :func:`maps_study` and write ``out/maps_study.json`` and ``out/maps_study.md``."""
    rows = maps_study(accelerations, seed, bart)
    out.mkdir(parents=True, exist_ok=True)
    (out / "maps_study.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "maps_study.md").write_text(f"`{command}`\n\n" + study_md(rows))
    print(study_md(rows))
    return rows
