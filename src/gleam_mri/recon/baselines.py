"""Classical baselines on a data set split: zero-filled, CG-SENSE and l1-wavelet compressed
sensing (its weight chosen per file on held-out k-space), scored per volume."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import evenly_spread, open_dataset
from gleam_mri.recon.cs import ITERATIONS, LambdaChoice, choose_lambda_for, l1_wavelet
from gleam_mri.recon.evaluate import VolumeResult, classical_reconstructor, evaluate, summarize

METHODS = ("zero-filled", "cg-sense", "cs")
DEFAULT_METHODS = ("zero-filled", "cg-sense")


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


def cs_lambdas(
    dataset: Dataset, items_per_file: int = 4, iterations: int = ITERATIONS
) -> dict[str, LambdaChoice]:
    """The l1 weight of each file of ``dataset`` (a slice or volume data set), chosen on the
    held-out k-space of up to ``items_per_file`` of its items spread evenly: no reference (the
    default weight where too few lines were measured to hold any out)."""
    choices = {}
    for f, info in enumerate(dataset.infos):
        indices = [i for i, (g, _) in enumerate(dataset.examples) if g == f]
        items = [dataset[indices[k]] for k in evenly_spread(len(indices), items_per_file)]
        choices[str(info.path)] = choose_lambda_for(items, iterations=iterations)
    return choices


def cs_reconstructor(
    choices: dict[str, LambdaChoice], iterations: int = ITERATIONS
) -> Callable[[MRIBatch], torch.Tensor]:
    """A reconstructor ``MRIBatch -> (B, *D)``: CS of each item with its file's weight."""

    def reconstruct(batch: MRIBatch) -> torch.Tensor:
        images = []
        for b, meta in enumerate(batch.meta):
            item = batch.shard(b, batch.kspace.shape[0]) if batch.kspace.shape[0] > 1 else batch
            images.append(l1_wavelet(item, choices[str(meta["file"])].lam, iterations))
        return torch.cat(images)

    return reconstruct


def run_baselines(
    files: Sequence[Path],
    mask_spec: dict[str, Any] | None,
    methods: Sequence[str] = DEFAULT_METHODS,
    maps: str = "file",
    lam: float = 1e-2,
    max_iter: int = 20,
    batch_size: int = 4,
    progress: bool = False,
    cs_choices: dict[str, LambdaChoice] | None = None,
) -> dict[str, list[VolumeResult]]:
    """Per-volume results of each method of :data:`METHODS` on ``files``: ``{method:
    [VolumeResult]}``. ``lam`` and ``max_iter`` are CG-SENSE's; CS chooses its weight per file
    (:func:`cs_lambdas`; pass ``cs_choices``, a dict, to receive them)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    dataset = open_dataset(files, mask_spec, maps, deterministic_masks=True)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_batches)
    results = {}
    for method in methods:
        if method == "cs":
            choices = cs_lambdas(dataset)
            if cs_choices is not None:
                cs_choices.update(choices)
            recon = cs_reconstructor(choices)
        else:
            recon = classical_reconstructor(method, lam=lam, max_iter=max_iter)
        results[method] = evaluate(loader, recon, progress=progress)
    return results


def summaries(results: dict[str, list[VolumeResult]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {metric: {mean, std}}}`` from :func:`run_baselines`'s output."""
    return {method: summarize(r) for method, r in results.items()}
