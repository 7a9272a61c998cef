"""Every real fully sampled scan against compressed sensing: two mask families, several seeds.

Usage (from the repository root, with the project installed or ``PYTHONPATH=src``)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/real_scans.py --out benchmarks/results/real-scans

The evidence table of issue 24. Every scan of ``../shared/data/real_fullysampled`` (or
``$GLEAM_SHARED_DATA``) is undersampled retrospectively with fastMRI's random line mask at 4x
and 8x, in two families: the default 8 % centre, and 24 centre lines (skipped where 24 lines
leave nothing to draw at that acceleration), with each of ``--seeds`` (mask seeds). Every
method of a case uses the same coil maps, those ``gleam adapt`` chooses on the undersampled scan
(``--maps auto``: ESPIRiT or JSENSE by held-out lines; the choice is reported):

- zero-filled (root-sum-of-squares of the coil images) and zero-filled through the maps;
- CG-SENSE (Tikhonov 0.01, 100 iterations);
- BART ``pics`` l1-wavelet at the fixed weight 0.01, and tuned on the reference (the best PSNR
  over ``real_brain.CS_GRID``: an upper bound); left out with a note when ``bart`` is absent;
- the project's CS, its weight chosen on held-out lines (no reference);
- the shipped 2D prior alone (``gleam recon --model brain-2d``: trained on simulated heads);
- ``gleam adapt`` at its defaults (with its comparison against CS) from the shipped prior (what
  ``gleam adapt FILE`` does) and from scratch (``--init none``), on the scans of
  ``--adapt-scans`` (``none`` leaves them out; they are the slow rows).

Metrics (fastMRI PSNR / SSIM of the magnitude against the file's ``reconstruction_rss``, full
size) are averaged over the seeds with a 95 % t-interval (seeds as the unit); seconds are the
method alone on this machine. Each finished case is kept in ``OUT/cases/``: the same command
continues an interrupted run (a kept case without adapt's rows runs again when its scan is in
``--adapt-scans``). Writes ``results.json`` (every row), ``table.md`` (the table and
which of the issue's targets are met) and ``grid-<scan>-R<R>.png`` (reference, each method and
its error) for the first seed of the 8 % family.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from gleam_mri.adapt.zero_shot import AdaptOptions
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.inference.priors import prior_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_brain  # cases, classical methods, BART
from real_brain_nets import adapt_method, network_method
from real_brain_report import save_grid

SCANS = {
    "brain": "real_fullysampled/pulseq_flash2d_brain_16ch.h5",
    "sphere-16ch": "real_fullysampled/pulseq_flash2d_sphere_16ch.h5",
    "sphere-se-32ch": "real_fullysampled/pulseq_se2d_sphere_32ch.h5",
    "bottle-4ch": "real_fullysampled/pulseq_flash2d_bottle_4ch.h5",
}
FAMILIES = ("8% centre", "24 lines")
ACCELERATIONS = (4.0, 8.0)
ADAPT = "gleam adapt (prior)"  # the default: the targets are checked on it
SCRATCH = "gleam adapt (scratch)"
PRIOR = "prior alone"
BART_FIXED = f"BART CS lam={real_brain.CS_LAM:g}"
ZERO_FILLED = "zero-filled RSS"
MAPS = real_brain.Maps("adapt-auto")


def center_fraction(family: str, width: int) -> float:
    """The centre fraction of a mask family for ``width`` phase-encoding lines."""
    return 0.08 if family == FAMILIES[0] else 24 / width


def feasible(family: str, width: int, acceleration: float) -> bool:
    """Whether the family's centre leaves outer lines to draw at ``acceleration``."""
    return round(center_fraction(family, width) * width) < width / acceleration


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (0 for one value)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return mean, float(half)


def cached(folder: Path, name: str) -> dict | None:
    """The rows and info of a case an earlier run of the same ``--out`` finished, if any."""
    path = (
        folder / "cases" / (name.replace("|", "_").replace(" ", "-").replace("%", "pc") + ".json")
    )
    return json.loads(path.read_text()) if path.is_file() else None


def adapted(done: dict) -> bool:
    """Whether a kept case has adapt's rows."""
    return ADAPT in {row["method"] for row in done["rows"]}


def store(folder: Path, name: str, done: dict) -> None:
    """Keep a finished case (``cached`` reads it back), so that a run can be continued."""
    path = (
        folder / "cases" / (name.replace("|", "_").replace(" ", "-").replace("%", "pc") + ".json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(done, indent=1) + "\n")


def run_cases(args: argparse.Namespace, bart: bool) -> tuple[list[dict], dict, list[str]]:
    """Every (scan, family, R, seed) case with every method: rows, case infos, skip notes.
    Cases finished by an earlier run into the same ``--out`` are read back, not run again."""
    rows, infos, notes = [], {}, []
    adapt_log: dict[str, dict] = {ADAPT: {}, SCRATCH: {}}
    for scan in args.scans:
        path = real_brain.SHARED / SCANS[scan]
        width = int(read_fastmri(path, slices=0).kspace.shape[-1])
        for family in FAMILIES:
            for r in args.accelerations:
                if not feasible(family, width, r):
                    notes.append(f"{scan}, {family}, {r:g}x: the centre alone exceeds 1/{r:g}")
                    continue
                for seed in args.seeds:
                    name = f"{scan}|{family}|R{r:g}|s{seed}"
                    done = cached(args.out, name)
                    if done is not None and scan in args.adapt_scans and not adapted(done):
                        done = None  # kept from a run without adapt on this scan: run it again
                    if done is not None:
                        rows += done["rows"]
                        infos[name] = done["info"]
                        notes += done["notes"]
                        continue
                    fraction = center_fraction(family, width)
                    case = real_brain.undersampled_case(path, r, fraction, seed, MAPS)
                    case.name = name
                    methods = real_brain.default_methods(bart)
                    methods[PRIOR] = network_method(prior_path("brain-2d"))
                    if scan in args.adapt_scans:
                        options = AdaptOptions()
                        methods[ADAPT] = adapt_method(None, options, adapt_log[ADAPT], True)
                        methods[SCRATCH] = adapt_method(None, options, adapt_log[SCRATCH])
                    sweeps = {"BART CS": real_brain.default_sweeps(bart)["BART CS"]} if bart else {}
                    result = real_brain.run(methods, [case], sweeps)
                    for row in result.rows:
                        row.update(scan=scan, family=family, R=r, seed=seed)
                        row.pop("case")
                        if row["method"] in adapt_log:
                            row.update(adapt_log[row["method"]].get(case.name, {}))
                    rows += result.rows
                    infos[case.name] = result.cases[case.name]
                    store(
                        args.out,
                        name,
                        {"rows": result.rows, "info": infos[name], "notes": []},
                    )
                    if seed == args.seeds[0] and family == FAMILIES[0]:
                        grid = args.out / f"grid-{scan}-R{r:g}.png"
                        save_grid(
                            grid,
                            case,
                            result.images[case.name],
                            [{**row, "case": case.name} for row in result.rows],
                        )
                    print(
                        f"{case.name}: "
                        + ", ".join(f"{row['method']} {row['PSNR']:.2f}" for row in result.rows),
                        flush=True,
                    )
    return rows, infos, notes


def aggregate(rows: list[dict], infos: dict) -> list[dict]:
    """One row per (scan, family, R, method): mean and 95 % half-width over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["scan"], row["family"], row["R"], row["method"]), []).append(row)
    table = []
    for (scan, family, r, method), members in groups.items():
        cases = [k for k in infos if k.startswith(f"{scan}|{family}|R{r:g}|")]
        chosen = [infos[k].get("maps_chosen", "?") for k in cases]
        psnr, psnr_half = interval([m["PSNR"] for m in members])
        ssim, ssim_half = interval([m["SSIM"] for m in members])
        entry = {
            "scan": scan,
            "family": family,
            "R": r,
            "method": method,
            "seeds": len(members),
            "PSNR": psnr,
            "PSNR_95": psnr_half,
            "SSIM": ssim,
            "SSIM_95": ssim_half,
            "seconds": float(np.mean([m["seconds"] for m in members])),
            "center_lines": infos[cases[0]]["center_lines"],
            "maps": ", ".join(f"{n} {chosen.count(n)}/{len(chosen)}" for n in sorted(set(chosen))),
        }
        if "lam" in members[0]:
            entry["lam"] = ", ".join(sorted({f"{m['lam']:g}" for m in members}))
        if method in (ADAPT, SCRATCH):
            entry["kept"] = ", ".join(str(m.get("kept", "?")) for m in members)
        table.append(entry)
    return table


def targets(table: list[dict]) -> list[str]:
    """The issue's targets, each said to be met or not, from the seed means."""
    by = {(t["scan"], t["family"], t["R"], t["method"]): t for t in table}
    lines = []
    keys = sorted({k[:3] for k in by if k[3] == ADAPT})
    for scan, family, r in keys:
        adapt = by[(scan, family, r, ADAPT)]["PSNR"]
        zero = by[(scan, family, r, ZERO_FILLED)]["PSNR"]
        bart = by.get((scan, family, r, BART_FIXED))
        gap = "" if bart is None else f"{adapt - bart['PSNR']:+.2f} dB against BART at 0.01"
        verdict = []
        if bart is not None:
            verdict.append("not below BART" if adapt >= bart["PSNR"] else "BELOW BART")
            if scan == "brain" and family == FAMILIES[0]:
                verdict.append("+1 dB met" if adapt >= bart["PSNR"] + 1 else "+1 dB NOT met")
        if by[(scan, family, r, ADAPT)]["center_lines"] <= 13:
            verdict.append("+3 dB over zero-filled " + ("met" if adapt >= zero + 3 else "NOT met"))
        lines.append(
            f"- {scan}, {family}, {r:g}x: adapt {adapt:.2f} dB, {gap}, {adapt - zero:+.2f} dB "
            f"against zero-filled: {'; '.join(verdict)}"
        )
    return lines


def table_md(table: list[dict], command: str, notes: list[str], lines: list[str]) -> str:
    """The markdown report: the aggregated table, the targets, the notes."""
    out = [
        f"`{command}`",
        "",
        "| scan | family (centre lines) | R | method | PSNR | SSIM | s | maps | weight / kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        extra = t.get("lam", t.get("kept", ""))
        out.append(
            f"| {t['scan']} | {t['family']} ({t['center_lines']}) | {t['R']:g} | {t['method']} "
            f"| {t['PSNR']:.2f} ± {t['PSNR_95']:.2f} | {t['SSIM']:.3f} ± {t['SSIM_95']:.3f} "
            f"| {t['seconds']:.1f} | {t['maps']} | {extra} |"
        )
    out += ["", "Targets (seed means):", *lines, "", *[f"Note: {n}" for n in notes]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--scans", nargs="+", choices=list(SCANS), default=list(SCANS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="mask seeds")
    parser.add_argument("--accelerations", type=float, nargs="+", default=list(ACCELERATIONS))
    parser.add_argument(
        "--adapt-scans",
        nargs="+",
        default=list(SCANS),
        help="scans gleam adapt runs on (the slow row), or 'none'",
    )
    parser.add_argument("--no-bart", action="store_true", help="leave BART out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bart = real_brain.have_bart() and not args.no_bart
    command = "python benchmarks/real_scans.py " + " ".join(argv or sys.argv[1:])
    rows, infos, notes = run_cases(args, bart)
    if not bart:
        notes.append("`bart` is not on PATH (or --no-bart): the BART rows are left out")
    table = aggregate(rows, infos)
    lines = targets(table)
    payload = {"command": command, "notes": notes, "cases": infos, "rows": rows, "table": table}
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    report = table_md(table, command, notes, lines)
    (args.out / "table.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
