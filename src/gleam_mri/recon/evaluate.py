"""Evaluate any reconstruction function on a data set, per volume, with fastMRI's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gleam_mri.data.batch import MRIBatch
from gleam_mri.metrics import volume_metrics
from gleam_mri.recon.classical import cg_sense, zero_filled

Reconstructor = Callable[[MRIBatch], torch.Tensor]


def classical_reconstructor(method: str, lam: float = 1e-2, max_iter: int = 20) -> Reconstructor:
    """A reconstructor ``MRIBatch -> complex image (B, *D)`` for ``zero-filled`` or ``cg-sense``."""
    if method == "zero-filled":
        return lambda batch: zero_filled(batch.operator(), batch.kspace)
    if method == "cg-sense":
        return lambda batch: cg_sense(batch.operator(), batch.kspace, lam=lam, max_iter=max_iter)
    raise ValueError(f"unknown classical method {method!r}; choose zero-filled or cg-sense")


@dataclass
class VolumeResult:
    """Metrics of one reconstructed volume, with its magnitude images ``(S, H, W)``."""

    file: str
    metrics: dict[str, float]
    recon: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)


def _as_slices(x: np.ndarray) -> np.ndarray:
    """``(S, H, W)`` view of one item's magnitude: 2D ``(H, W)`` -> ``(1, H, W)``; 3D/cine as is."""
    return x[None] if x.ndim == 2 else x.reshape(-1, *x.shape[-2:])


@torch.no_grad()
def evaluate(
    batches: Iterable[MRIBatch],
    reconstruct: Reconstructor,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> list[VolumeResult]:
    """Run ``reconstruct`` over ``batches`` and score each volume (all slices of one file).

    Reconstructions are cropped to the target's size, taken in magnitude and denormalised, so the
    metrics compare with the file's ``reconstruction_rss`` on its own scale (data range = its max).
    """
    recons: dict[str, list[np.ndarray]] = {}
    targets: dict[str, list[np.ndarray]] = {}
    for batch in tqdm(batches, desc="evaluating", unit="batch", disable=not progress):
        batch = batch.to(device)
        image = batch.denormalize(batch.crop_to_target(reconstruct(batch)).abs())
        target = batch.denormalize(batch.target)
        for b, meta in enumerate(batch.meta):
            name = str(meta["file"])
            recons.setdefault(name, []).append(_as_slices(image[b].float().cpu().numpy()))
            targets.setdefault(name, []).append(_as_slices(target[b].float().cpu().numpy()))
    results = []
    for name in sorted(recons):
        rec, tgt = np.concatenate(recons[name]), np.concatenate(targets[name])
        results.append(VolumeResult(Path(name).name, volume_metrics(tgt, rec), rec, tgt))
    return results


def summarize(results: list[VolumeResult]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over volumes: ``{metric: {mean, std}}``."""
    if not results:
        raise ValueError("no volumes were evaluated")
    keys = results[0].metrics.keys()
    out = {}
    for key in keys:
        values = np.array([r.metrics[key] for r in results], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
