"""Human-readable outputs: markdown metric tables and image grids (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def metrics_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown table from ``{method: {metric: {"mean", "std"}}}``; one row per method."""
    if not rows:
        raise ValueError("no results to tabulate")
    metrics = list(next(iter(rows.values())).keys())
    lines = [
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for method, summary in rows.items():
        cells = []
        for m in metrics:
            digits = 2 if m == "PSNR" else 4
            cells.append(f"{summary[m]['mean']:.{digits}f} ± {summary[m]['std']:.{digits}f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_image_grid(
    path: str | Path,
    target: np.ndarray,
    recons: Mapping[str, np.ndarray],
    titles: Sequence[str] | None = None,
    error_gain: float = 5.0,
) -> Path:
    """Save target and reconstructions (each ``(H, W)`` magnitude) with error maps below, as PNG.

    The error row shows ``|recon - target|`` amplified by ``error_gain`` on the target's scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["target", *recons.keys()]
    images = [target, *recons.values()]
    vmax = float(np.percentile(target, 99.5)) or 1.0
    fig, axes = plt.subplots(2, len(names), figsize=(3 * len(names), 6.2), squeeze=False)
    for j, (name, img) in enumerate(zip(names, images, strict=True)):
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(titles[j] if titles else name, fontsize=9)
        if j > 0:
            axes[1, j].imshow(np.abs(img - target) * error_gain, cmap="magma", vmin=0, vmax=vmax)
            axes[1, j].set_title(f"|error| x{error_gain:g}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
