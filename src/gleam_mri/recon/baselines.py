"""Classical baselines on a data set split: zero-filled and CG-SENSE, scored per volume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from gleam_mri.data.batch import collate_batches
from gleam_mri.data.datasets import open_dataset
from gleam_mri.recon.evaluate import VolumeResult, classical_reconstructor, evaluate, summarize

METHODS = ("zero-filled", "cg-sense")


def default_mask_spec(
    kind: str,
    acceleration: float,
    center_fraction: float = 0.08,
    image_shape: tuple[int, ...] | None = None,
) -> dict:
    """Usual undersampling: random lines (2D), Poisson-disc (3D), per-frame lines (cine).

    ``image_shape`` (``D`` of one sample) sizes the 3D calibration region: 12 x 12, or a quarter
    of each phase-encoding axis when that is smaller.
    """
    if kind == "2d":
        return {
            "name": "random",
            "center_fractions": [center_fraction],
            "accelerations": [acceleration],
        }
    if kind == "3d":
        calib = [12, 12]
        if image_shape is not None:
            calib = [min(12, max(2, image_shape[0] // 4)), min(12, max(2, image_shape[-1] // 4))]
        return {"name": "poisson", "acceleration": acceleration, "calib": calib}
    if kind == "cine":
        return {"name": "cine", "acceleration": acceleration, "center_lines": 8}
    raise ValueError(f"unknown data kind {kind!r}")


def split_files(data_dir: str | Path, split: str) -> list[Path]:
    """The ``.h5`` files of ``data_dir/split`` (or of ``data_dir`` itself if it holds files)."""
    root = Path(data_dir)
    folder = root / split if (root / split).is_dir() else root
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise FileNotFoundError(f"no .h5 files in {folder}")
    return files


def run_baselines(
    files: Sequence[Path],
    mask_spec: dict[str, Any] | None,
    methods: Sequence[str] = METHODS,
    maps: str = "file",
    lam: float = 1e-2,
    max_iter: int = 20,
    batch_size: int = 4,
    progress: bool = False,
) -> dict[str, list[VolumeResult]]:
    """Per-volume results of each classical method on ``files``: ``{method: [VolumeResult]}``."""
    dataset = open_dataset(files, mask_spec, maps, deterministic_masks=True)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_batches)
    results = {}
    for method in methods:
        recon = classical_reconstructor(method, lam=lam, max_iter=max_iter)
        results[method] = evaluate(loader, recon, progress=progress)
    return results


def summaries(results: dict[str, list[VolumeResult]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {metric: {mean, std}}}`` from :func:`run_baselines`'s output."""
    return {method: summarize(r) for method, r in results.items()}
