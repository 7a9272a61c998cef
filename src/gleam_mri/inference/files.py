"""Use a trained checkpoint: score it on a data set (``gleam eval``) or reconstruct files
(``gleam recon``) to fastMRI-style HDF5 (``reconstruction``), NIfTI and PNG.
"""

from __future__ import annotations

import contextlib
import csv
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from gleam_mri.crop import center_crop
from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.fastmri import inspect_fastmri, is_fastmri_layout, read_fastmri
from gleam_mri.inference.engine import load_run, reconstruct
from gleam_mri.inference.outputs import write_outputs
from gleam_mri.recon.baselines import cs_lambdas
from gleam_mri.recon.coil_maps import maps_estimator
from gleam_mri.recon.cs import LambdaChoice, l1_wavelet
from gleam_mri.recon.evaluate import VolumeResult, evaluate
from gleam_mri.training.run import Run


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


def output_crop(image: torch.Tensor, batch: MRIBatch) -> torch.Tensor:
    """Crop to the target, else to the header's recon size (fastMRI test files), else keep."""
    if batch.target is not None:
        return batch.crop_to_target(image)
    recon = batch.meta[0].get("recon_size")
    if recon and recon[0] <= image.shape[-2] and recon[1] <= image.shape[-1]:
        return center_crop(image, (recon[0], recon[1]))
    return image


def _reconstruct_in_slabs(run, batch: MRIBatch, slab: int, overlap: int) -> torch.Tensor:
    """``(1, Z, H, W)`` image of a 3D item, reconstructed slab by slab (normalised scale)."""
    from gleam_mri.data.slabs import reconstruct_volume_in_slabs

    image = reconstruct_volume_in_slabs(
        lambda b: reconstruct(run, b),
        batch.kspace[0],
        batch.mask[0],
        batch.maps[0],
        min(slab, batch.kspace.shape[-2]),
        overlap,
        normalize=False,  # the item is already normalised as a whole
    )
    return image[None]


def reconstruct_file(
    ckpt: str | Path,
    path: str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] = ("h5", "nii", "png"),
    undersample: bool = True,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Reconstruct every slice of a file; returns the written files.

    Raw data (ISMRMRD HDF5, Siemens twix, BART CFL) is converted to the fastMRI layout first
    (:mod:`gleam_mri.data.raw`). Files with their own ``mask`` (fastMRI test data) are
    reconstructed as they are. Fully sampled files are undersampled with the checkpoint's
    training mask when ``undersample`` (to see what the network does at that acceleration),
    else reconstructed from all their k-space. Files without ``maps`` get the maps ``gleam adapt``
    chooses (:func:`~gleam_mri.recon.coil_maps.maps_estimator`: ESPIRiT or JSENSE per 2D item).
    ``progress(done, total)`` is called once the file is open (``done`` 0) and after every
    slice; an exception it raises stops the reconstruction (cancellation, time limits).
    """
    run, _ = load_run(ckpt, device)
    return reconstruct_with_run(run, path, out_dir, formats, undersample, progress)


@contextlib.contextmanager
def fastmri_file(path: str | Path) -> Iterator[Path]:
    """``path`` itself when it is in the fastMRI layout, else its conversion (ISMRMRD HDF5,
    twix, BART CFL: :mod:`gleam_mri.data.raw`) in a temporary folder removed on exit."""
    path = Path(path)
    if is_fastmri_layout(path):
        yield path
        return
    from gleam_mri.data.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        yield convert(path, Path(tmp) / f"{path.stem}.h5")


def reconstruct_with_run(
    run: Run,
    path: str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] = ("h5", "nii", "png"),
    undersample: bool = True,
    progress: Callable[[int, int], None] | None = None,
    stem: str | None = None,
    engine: Callable[[MRIBatch], torch.Tensor] | None = None,
) -> list[Path]:
    """:func:`reconstruct_file` with a network already loaded (:func:`load_run`); the outputs
    are named ``stem`` (default: the file's stem). ``engine``: batch -> complex image at the
    batch's scale (default: ``run``'s network in PyTorch; e.g. an
    :class:`~gleam_mri.onnx.engine.OnnxEngine`'s ``reconstruct``, ``run`` then giving the
    config)."""
    stem = Path(path).stem if stem is None else stem
    with fastmri_file(path) as path:
        info = inspect_fastmri(path)
        # a small calibration region wrecks ESPIRiT: choose as gleam adapt chooses
        maps = run.cfg.data.maps if info.has_maps else maps_estimator("auto")
        mask = run.cfg.data.mask if undersample and not info.has_mask else None
        dataset = open_dataset(path, mask, maps, deterministic_masks=True)
        slab = run.cfg.data.slab if info.kind == "3d" else None

        def image_of(batch: MRIBatch) -> torch.Tensor:
            if slab is not None:  # memory-bounded: one readout slab at a time
                return _reconstruct_in_slabs(run, batch, slab, run.cfg.data.slab_overlap)
            return output_crop(reconstruct(run, batch) if engine is None else engine(batch), batch)

        return write_dataset(dataset, image_of, stem, out_dir, formats, info, progress)


def write_dataset(
    dataset: Any,
    image_of: Callable[[MRIBatch], torch.Tensor],
    stem: str,
    out_dir: str | Path,
    formats: tuple[str, ...],
    info: Any,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Reconstruct every item of ``dataset`` (one file's) with ``image_of`` (item -> complex
    ``(1, *D)``, cropped) and write the magnitudes at the file's scale (``info``: its
    :func:`~gleam_mri.data.fastmri.inspect_fastmri`). ``progress(done, total)`` is called
    before the first item and after every item."""
    slices = []
    if progress is not None:
        progress(0, len(dataset))
    for i in range(len(dataset)):
        batch = dataset[i]
        image = image_of(batch)
        slices.append(batch.denormalize(image.abs().cpu())[0].numpy().astype(np.float32))
        if progress is not None:
            progress(i + 1, len(dataset))
    volume = np.stack(slices)  # (S, H, W) in 2D; (S, Z|T, H, W) in 3D / cine
    return write_outputs(volume, stem, out_dir, formats, info.header, info.kind)


def reconstruct_with_cs(
    path: str | Path,
    out_dir: str | Path,
    formats: tuple[str, ...] = ("h5", "nii", "png"),
    mask_spec: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Path], LambdaChoice]:
    """``gleam recon --method cs``: l1-wavelet CS (:mod:`gleam_mri.recon.cs`) of every item of
    a file, its weight chosen without a reference on held-out lines of up to 4 items spread
    over the file (:func:`~gleam_mri.recon.baselines.cs_lambdas`); returns the files written
    and the choice. Undersampled files are used as they are; a fully sampled one is undersampled
    with ``mask_spec``, and refused without it (CS would have nothing to fill in). Maps as
    :func:`reconstruct_with_run` takes them (the file's, else ESPIRiT or JSENSE)."""
    stem = Path(path).stem
    with fastmri_file(path) as path:
        info = inspect_fastmri(path)
        mask = None if info.has_mask else mask_spec
        if mask is None and not info.has_mask:
            first = read_fastmri(path, slices=0).kspace
            if (np.abs(first).sum(axis=1) > 0).all():
                raise ValueError(
                    f"{path}: fully sampled (every k-space sample was measured), so CS has "
                    "nothing to fill in; pass --mask to undersample it retrospectively"
                )
        maps = "file" if info.has_maps else maps_estimator("auto")
        dataset = open_dataset(path, mask, maps, deterministic_masks=True)
        (choice,) = cs_lambdas(dataset).values()  # one file

        def image_of(batch: MRIBatch) -> torch.Tensor:
            return output_crop(l1_wavelet(batch, choice.lam), batch)

        return write_dataset(dataset, image_of, stem, out_dir, formats, info, progress), choice
