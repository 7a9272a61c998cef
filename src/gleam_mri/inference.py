"""Use a trained checkpoint: score it on a data set (``gleam eval``) or reconstruct files
(``gleam recon``) to fastMRI-style HDF5 (``reconstruction``), NIfTI and PNG.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gleam_mri.data.batch import MRIBatch, center_crop, collate_batches
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.fastmri import inspect_fastmri
from gleam_mri.recon.evaluate import VolumeResult, evaluate
from gleam_mri.training.loop import load_run, reconstruct


def evaluate_checkpoint(
    ckpt: str | Path, data: str | Path, out: str | Path | None = None, device: str = "auto"
) -> list[VolumeResult]:
    """Per-volume metrics of a checkpoint on the ``.h5`` files of ``data`` (masks of training).

    Writes ``out`` as CSV or JSON (by suffix) when given.
    """
    run, _ = load_run(ckpt, device)
    cfg = run.cfg
    dataset = open_dataset(data, cfg.data.mask, cfg.data.maps, deterministic_masks=True)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, collate_fn=collate_batches)
    results = evaluate(loader, lambda b: reconstruct(run, b), device=run.device)
    if out is not None:
        write_metrics(results, out)
    return results


def write_metrics(results: list[VolumeResult], path: str | Path) -> Path:
    """Per-volume metrics as CSV (``.csv``) or JSON (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"file": r.file, **r.metrics} for r in results]
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps(rows, indent=2))
    return path


def _output_crop(image: torch.Tensor, batch: MRIBatch) -> torch.Tensor:
    """Crop to the target, else to the header's recon size (fastMRI test files), else keep."""
    if batch.target is not None:
        return batch.crop_to_target(image)
    recon = batch.meta[0].get("recon_size")
    if recon and recon[0] <= image.shape[-2] and recon[1] <= image.shape[-1]:
        return center_crop(image, (recon[0], recon[1]))
    return image


def reconstruct_file(
    ckpt: str | Path,
    path: str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] = ("h5", "nii", "png"),
    undersample: bool = True,
    device: str = "auto",
) -> list[Path]:
    """Reconstruct every slice of a fastMRI-layout file; returns the written files.

    Files with their own ``mask`` (fastMRI test data) are reconstructed as they are. Fully sampled
    files are undersampled with the checkpoint's training mask when ``undersample`` (to see what
    the network does at that acceleration), else reconstructed from all their k-space. Files
    without ``maps`` get ESPIRiT maps.
    """
    run, _ = load_run(ckpt, device)
    path = Path(path)
    info = inspect_fastmri(path)
    maps = run.cfg.data.maps if info.has_maps else "espirit"
    mask = run.cfg.data.mask if undersample and not info.has_mask else None
    dataset = open_dataset(path, mask, maps, deterministic_masks=True)
    slices = []
    for i in range(len(dataset)):
        batch = dataset[i]
        image = _output_crop(reconstruct(run, batch), batch)
        slices.append(batch.denormalize(image.abs().cpu())[0].numpy().astype(np.float32))
    volume = np.stack(slices)  # (S, H, W) in 2D; (S, Z|T, H, W) in 3D / cine
    return write_outputs(volume, path.stem, out_dir, formats, info.header)


def write_outputs(
    volume: np.ndarray, stem: str, out_dir: str | Path, formats: tuple[str, ...], header: dict
) -> list[Path]:
    """Write a magnitude volume ``(S, ...)`` as HDF5 / NIfTI / PNG; returns the paths."""
    import h5py

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    unknown = set(formats) - {"h5", "nii", "png"}
    if unknown:
        raise ValueError(f"unknown output formats {sorted(unknown)}; valid: h5, nii, png")
    if "h5" in formats:
        target = out / f"{stem}.h5"
        tmp = target.with_suffix(".h5.tmp")
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=volume)
        tmp.replace(target)
        written.append(target)
    if "nii" in formats:
        written.append(_write_nifti(volume, out / f"{stem}.nii.gz", header))
    if "png" in formats:
        written.append(_write_png(volume, out / f"{stem}.png"))
    return written


def _write_nifti(volume: np.ndarray, path: Path, header: dict) -> Path:
    """NIfTI with voxel sizes from the header's reconstruction field of view (1 mm if absent)."""
    import nibabel as nib

    data = volume.reshape(-1, *volume.shape[-2:])  # (slices, H, W)
    data = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))  # (W, H, slices): x, y, z
    fov = header.get("recon_fov_mm") or header.get("encoding_fov_mm")
    h, w = volume.shape[-2:]
    if fov and all(fov):
        spacing = (fov[1] / w, fov[0] / h, float(fov[2]) if volume.ndim == 3 else 1.0)
    else:
        spacing = (1.0, 1.0, 1.0)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


def _write_png(volume: np.ndarray, path: Path) -> Path:
    """PNG montage of up to 8 evenly spaced slices (frames / partitions) of the volume."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    images = volume.reshape(-1, *volume.shape[-2:])
    picks = np.linspace(0, len(images) - 1, min(8, len(images))).round().astype(int)
    fig = Figure(figsize=(2.5 * len(picks), 2.7))
    vmax = float(np.percentile(images, 99.5)) or 1.0
    for j, index in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), j + 1)
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"{index}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
