"""Real 2D brain: the tables and image grids of ``real_brain.py`` and ``real_brain_nets.py``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from real_brain import Case, Results


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _label(row: dict[str, Any]) -> str:
    return row["method"] + (f" (lam={row['lam']:g})" if "lam" in row else "")


def table_md(res: Results) -> str:
    """Markdown table: one row per case and method (PSNR, SSIM, NMSE, residual, seconds)."""
    lines = [
        "| case | R | method | PSNR | SSIM | NMSE | residual | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res.rows:
        keys = (("PSNR", 2), ("SSIM", 4), ("NMSE", 4), ("residual", 4), ("seconds", 2))
        cells = " | ".join(_cell(r.get(k), d) for k, d in keys)
        accel = res.cases[r["case"]]["acceleration"]
        lines.append(f"| {r['case']} | {accel:.2f} | {_label(r)} | {cells} |")
    return "\n".join(lines) + "\n"


def save_grid(path: Path, case: Case, images: dict[str, np.ndarray], rows: list[dict]) -> Path:
    """Reference (if any) and each method's magnitude, with ``|method - reference|`` below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = case.reference
    names = (["reference"] if ref is not None else []) + list(images)
    pics = ([ref] if ref is not None else []) + list(images.values())
    by = {r["method"]: r for r in rows if r["case"] == case.name}
    vmax = float(np.percentile(ref if ref is not None else pics[0], 99.5)) or 1.0
    n_rows = 2 if ref is not None else 1
    fig, axes = plt.subplots(
        n_rows, len(names), figsize=(1.9 * len(names), 2.2 * n_rows), squeeze=False
    )
    for j, (name, img) in enumerate(zip(names, pics, strict=True)):
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        row = by.get(name, {"method": name})
        value = f"\n{row['PSNR']:.2f} dB" if "PSNR" in row else ""
        if not value and row.get("residual") is not None:
            value = f"\nresidual {row['residual']:.4f}"
        axes[0, j].set_title(_label(row) + value, fontsize=7)
        if ref is not None and j > 0:
            axes[1, j].imshow(
                np.abs(img - ref) * 5, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest"
            )
            axes[1, j].set_title("|error| x5", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100)
    plt.close(fig)
    from PIL import Image as PILImage  # a matplotlib dependency

    # 256 colours: a third of the bytes (the noisy error maps compress badly)
    PILImage.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)
    return path


def write_results(out: Path, res: Results, cases: list[Case], command: str, note: str = "") -> None:
    """``results.json``, ``table.md`` and one ``grid-<case>.png`` per case under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "note": note, "cases": res.cases, "rows": res.rows}
    payload["sweeps"] = res.sweeps
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    header = f"`{command}`\n\n" + (f"{note}\n\n" if note else "")
    (out / "table.md").write_text(header + table_md(res))
    for case in cases:
        save_grid(out / f"grid-{case.name}.png", case, res.images[case.name], res.rows)
