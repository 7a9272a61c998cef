"""The study's outputs: ``study.json``, ``study.md`` and its figures, from :func:`run_study`'s
results.

Each trained arm is summarised over seeds (mean and standard deviation of the per-seed means over
test volumes); the paired difference against ``e2e-fit`` is taken per test slice, on the slice's
PSNR averaged over seeds, with a 95% Student-t interval (an interval containing 0 reads "no
difference").
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.study.runner import write_json
from gleam_mri.study.stats import paired_difference
from gleam_mri.units import format_size

__all__ = ["per_slice_psnr", "summarize_study", "write_outputs"]

REFERENCE = "e2e-fit"
METRICS = ("PSNR", "SSIM", "NMSE")


def per_slice_psnr(entry: dict[str, Any]) -> dict[tuple[str, int], float]:
    """Slice PSNR averaged over the arm's seeds, keyed by (file, slice)."""
    values: dict[tuple[str, int], list[float]] = {}
    for seed in entry["seeds"].values():
        for s in seed.get("slices", []):
            values.setdefault((s["file"], s["slice"]), []).append(s["PSNR"])
    return {k: float(np.mean(v)) for k, v in values.items()}


def summarize_study(results: dict[str, Any]) -> dict[str, Any]:
    """Per arm: metrics over seeds, memory, times, and the paired PSNR difference to e2e-fit."""
    arms = results["arms"]
    reference = per_slice_psnr(arms[REFERENCE]) if arms.get(REFERENCE, {}).get("seeds") else None
    summary = {}
    for name, entry in arms.items():
        row: dict[str, Any] = {"plan": entry["plan"]}
        stopped = [s["stopped"] for s in entry["seeds"].values() if "stopped" in s]
        if stopped:
            row["stopped"] = {"runs": len(stopped), "first": stopped[0]}
        seeds = [s for s in entry["seeds"].values() if "volumes" in s]
        if seeds:
            for metric in METRICS:
                means = [np.mean([v[metric] for v in s["volumes"]]) for s in seeds]
                row[metric] = {"mean": float(np.mean(means)), "std": float(np.std(means))}
            times = [s["median_step_s"] for s in seeds if s["median_step_s"] is not None]
            row["median_step_s"] = float(np.median(times)) if times else None
            row["train_s"] = float(np.mean([s["train_s"] for s in seeds]))
        if "memory" in entry:
            row["peak_bytes"] = entry["memory"]["peak_bytes"]
            row["meter"] = entry["memory"]["meter"]
        if seeds:
            if reference is not None and name != REFERENCE:
                mine = per_slice_psnr(entry)
                keys = sorted(reference)
                if keys == sorted(mine):
                    diff = paired_difference([mine[k] for k in keys], [reference[k] for k in keys])
                    row["vs_e2e_fit"] = diff.to_dict()
        summary[name] = row
    return summary


def _cell(row: dict[str, Any], metric: str) -> str:
    if metric not in row:
        return "-"
    digits = 2 if metric == "PSNR" else 4
    return f"{row[metric]['mean']:.{digits}f} ± {row[metric]['std']:.{digits}f}"


def _table(summary: dict[str, Any], budget: int) -> str:
    lines = [
        "| arm | setting | fits | predicted | measured peak | PSNR | SSIM | NMSE "
        "| ΔPSNR vs e2e-fit [95% CI] | median step (s) | training (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        plan = row["plan"]
        fits = "reference" if not plan["in_budget"] else ("yes" if plan["fits"] else "no")
        if "stopped" in row:
            fits += f"; {row['stopped']['runs']} run(s) stopped"
        predicted = format_size(plan["predicted_bytes"]) if plan["predicted_bytes"] else "-"
        peak = format_size(row["peak_bytes"]) if "peak_bytes" in row else "-"
        diff = row.get("vs_e2e_fit")
        delta = (
            f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] {diff['verdict']}"
            if diff
            else "-"
        )
        step = f"{row['median_step_s']:.3f}" if row.get("median_step_s") else "-"
        train = f"{row['train_s']:.0f}" if "train_s" in row else "-"
        cells = [name, plan["setting"], fits, predicted, peak]
        cells += [_cell(row, m) for m in METRICS] + [delta, step, train]
        lines.append("| " + " | ".join(cells) + " |")
    stopped = [f"- {n}: {r['stopped']['first']}" for n, r in summary.items() if "stopped" in r]
    notes = "\n\nRuns whose training stopped:\n" + "\n".join(stopped) if stopped else ""
    return "\n".join(lines) + f"\n\nBudget: {format_size(budget)}.{notes}"


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        card = torch.cuda.get_device_name(torch.device(device))
    else:
        card = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    return f"{card}; Python {platform.python_version()}, torch {torch.__version__}"


def write_outputs(results: dict[str, Any], out: str | Path, command: str) -> Path:
    """Write ``study.json``, ``study.md`` and the figures into ``out``; returns ``study.md``."""
    out = Path(out)
    summary = summarize_study(results)
    write_json(out / "study.json", {**results, "summary": summary, "command": command})
    figures = _figures(results, summary, out)
    cfg = results["config"]
    md = [
        "# Equal-memory study",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_machine(results['device'])}.",
        f"Data: {cfg['data']['root']} ({results['problem']['kind']}, "
        f"{'x'.join(map(str, results['problem']['shape']))}, {results['problem']['coils']} coils), "
        f"mask {cfg['data']['mask']}.",
        f"Training: {cfg['train']['steps']} steps of batch {cfg['data']['batch_size']} for every "
        f"arm, {cfg['optim']['name']} at lr {cfg['optim']['lr']:g} for every arm "
        f"(scheduler {cfg['optim']['scheduler']}, clipping {cfg['optim']['grad_clip']}), "
        f"{cfg['train']['loss']} loss; seeds {results['seeds']} for every arm.",
        "",
        _table(summary, results["budget"]),
        "",
        "Metrics: fastMRI's definitions on the test split, per volume; mean ± std over seeds of "
        "the per-seed means. ΔPSNR: per test slice (slice PSNR averaged over seeds) against "
        "e2e-fit, mean and 95% Student-t interval; an interval containing 0 reads 'no "
        "difference'. Measured peak: one training step after a warm-up "
        f"({summary_meter(summary)}: parameters, gradients, optimizer state, batch and every "
        "activation alive at the peak, recomputed segments included); predicted: the planner's "
        "cost model, which the budget is applied to (on the CPU it counts saved-for-backward "
        "activations, so the measured peak is higher).",
        "",
        *[f"![{name}]({path.name})" for name, path in figures.items()],
        "",
    ]
    path = out / "study.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


def summary_meter(summary: dict[str, Any]) -> str:
    meters = {row["meter"] for row in summary.values() if "meter" in row}
    return ", ".join(sorted(meters)) or "none"


def _figures(results: dict[str, Any], summary: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gleam_mri.report import save_image_grid

    trained = {n: r for n, r in summary.items() if "PSNR" in r}
    paths = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in trained.items():
        mib = row["peak_bytes"] / 2**20
        ax.errorbar(mib, row["PSNR"]["mean"], yerr=row["PSNR"]["std"], fmt="o", capsize=3)
        ax.annotate(name, (mib, row["PSNR"]["mean"]), textcoords="offset points", xytext=(4, 4))
    ax.axvline(results["budget"] / 2**20, color="gray", linestyle="--", label="budget")
    ax.set(xlabel="peak memory of a training step (MiB)", ylabel="test PSNR (dB)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths["PSNR vs memory"] = out / "psnr_vs_memory.png"
    fig.savefig(paths["PSNR vs memory"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(trained):
        for j, seed in enumerate(results["arms"][name]["seeds"].values()):
            xs = [v["seconds"] for v in seed["val"]]
            ys = [v["PSNR"] for v in seed["val"]]
            ax.plot(xs, ys, "-o", color=f"C{i}", ms=3, alpha=0.8, label=name if j == 0 else None)
    ax.set(xlabel="training time (s, validation excluded)", ylabel="validation PSNR (dB)")
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths["validation PSNR vs time"] = out / "val_psnr_vs_time.png"
    fig.savefig(paths["validation PSNR vs time"], dpi=110)
    plt.close(fig)

    recons, target = {}, None
    for name in trained:
        seeds = results["arms"][name]["seeds"]
        seed = min(k for k, v in seeds.items() if "volumes" in v)
        data = np.load(out / "runs" / name / f"seed{seed}" / "slice.npz")
        target, recons[name] = data["target"], data["recon"]
    if target is not None:
        paths["test slice"] = save_image_grid(out / "images.png", target, recons)
    return paths
