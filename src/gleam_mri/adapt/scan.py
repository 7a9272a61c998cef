"""One scan as a training set: its items with their measured samples, for ``gleam adapt``.

:func:`load_scan` reads a fastMRI-layout file (raw formats are converted by the caller) into
normalised B=1 items (2D slices, cine series, or 3D readout slabs) whose ``mask`` is the set of
measured samples ``Omega`` (:func:`gleam_mri.selfsup.data.measured_mask`), with coil maps from the
file or, when it has none, estimated from the measured samples (ESPIRiT or JSENSE, chosen per
item on held-out lines: :mod:`gleam_mri.recon.coil_maps`). A fully sampled file is
undersampled retrospectively with ``mask_spec`` when one is given and refused otherwise: there is
nothing to reconstruct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.errors import DatasetError
from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri
from gleam_mri.recon.coil_maps import ChosenMaps, MapsChoice, maps_estimator
from gleam_mri.selfsup.data import measured_mask


class ScanError(ValueError):
    """The scan cannot be used for scan-specific training (the message names the file)."""


@dataclass
class Scan:
    """A scan's items and what is needed to write its reconstruction.

    ``items``: B=1 batches (normalised, ``mask`` = measured samples ``(1, 1, *D)``);
    ``volumes``: for 3D slab training, the whole volumes (B=1) that the final reconstruction
    runs over slab by slab; ``None`` otherwise. Their maps are the file's, or placeholders when
    ``volume_maps`` is ``False`` (ESPIRiT per slab, as in training). ``header``: the file's
    ISMRMRD fields (voxel sizes of the outputs). ``maps_choices``: the coil-map estimator used for
    each item (and the held-out losses that chose it) when the file has no maps.
    """

    path: Path
    kind: str
    header: dict[str, Any]
    items: list[MRIBatch]
    volumes: list[MRIBatch] | None = None
    slab: int | None = None
    overlap: int = 0
    volume_maps: bool = True
    maps_choices: list[MapsChoice] = field(default_factory=list)  # empty: the file's maps

    @property
    def measured_fraction(self) -> float:
        """Share of the k-space grid that was measured (mean over items)."""
        return float(torch.stack([b.mask.float().mean() for b in self.items]).mean())


def with_measured(batch: MRIBatch, path: Path) -> MRIBatch:
    """The item with ``mask`` = its measured samples; refuses fully sampled or empty items."""
    measured = measured_mask(batch, 0)
    if not measured.any():
        raise ScanError(f"{path}: an item has no measured k-space sample (all zeros)")
    if measured.all():
        raise ScanError(
            f"{path}: fully sampled (every k-space sample was measured), so there is nothing to "
            "reconstruct; pass a mask (--mask) to undersample it retrospectively"
        )
    return MRIBatch(
        kspace=batch.kspace,
        mask=measured[None].to(torch.float32),
        maps=batch.maps,
        target=batch.target,
        scale=batch.scale,
        fft_ndim=batch.fft_ndim,
        meta=batch.meta,
    )


def load_scan(
    path: str | Path,
    mask_spec: dict[str, Any] | None = None,
    slab: int | None = None,
    overlap: int = 0,
    maps_method: str = "auto",
) -> Scan:
    """The items of one fastMRI-layout file (module docstring); ``slab``: 3D readout slabs;
    ``maps_method``: how maps are estimated when the file has none (``"auto"``: chosen per
    item on held-out lines, :class:`~gleam_mri.recon.coil_maps.ChosenMaps`; or a candidate's
    name, ``"espirit"`` / ``"jsense"``).

    Raises :class:`ScanError` (naming the file) for fully sampled data without ``mask_spec``, a
    file that already has a mask given a ``mask_spec``, or no calibration region for ESPIRiT.
    """
    path = Path(path)
    try:
        info = inspect_fastmri(path)
    except (OSError, DatasetError, KeyError, ValueError) as err:
        raise ScanError(f"{path}: not a readable fastMRI-layout file ({err})") from err
    if mask_spec is not None and info.has_mask:
        raise ScanError(f"{path}: the file is already undersampled (it has a mask); drop --mask")
    if mask_spec is None and not info.has_mask:  # refused before any coil-map estimation
        kspace = read_fastmri(path).kspace
        if (np.abs(kspace).sum(axis=1) > 0).all():
            raise ScanError(
                f"{path}: fully sampled (every k-space sample was measured), so there is nothing "
                "to reconstruct; pass a mask (--mask) to undersample it retrospectively"
            )
    chooser: ChosenMaps | None = None if info.has_maps else maps_estimator(maps_method)
    maps = "file" if chooser is None else chooser
    choices = [] if chooser is None else chooser.choices
    try:
        if info.kind == "3d" and slab is not None:
            from gleam_mri.data.slabs import SlabDataset
            from gleam_mri.physics.masks import build_mask_func

            mask_func = build_mask_func(mask_spec) if mask_spec else None
            slabs = SlabDataset(path, slab, overlap, mask_func, maps, deterministic_masks=True)
            items = [with_measured(slabs[i], path) for i in range(len(slabs))]
            whole = open_dataset(path, mask_spec, "file" if info.has_maps else _unit_maps, True)
            volumes = [whole[i] for i in range(len(whole))]
            return Scan(
                path, info.kind, info.header, items, volumes, slab, overlap, info.has_maps, choices
            )
        dataset = open_dataset(path, mask_spec, maps, deterministic_masks=True)
        items = [with_measured(dataset[i], path) for i in range(len(dataset))]
    except ScanError:
        raise
    except ValueError as err:  # ESPIRiT without a calibration region, masks, shapes
        raise ScanError(f"{path}: {err}") from err
    return Scan(path, info.kind, info.header, items, maps_choices=choices)


def _unit_maps(kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int) -> torch.Tensor:
    """Placeholder maps of a whole 3D volume whose file has none: ESPIRiT runs per slab when
    the volume is reconstructed (:attr:`Scan.volume_maps` is then ``False``)."""
    return torch.ones_like(kspace)


def volume_mask(batch: MRIBatch) -> torch.Tensor:
    """Measured ``(Z, W)`` locations of a whole 3D volume item, float ``(1, 1, Z, 1, W)``."""
    nonzero = batch.kspace[0].abs().sum(dim=(0, 2), keepdim=True) > 0  # (1, Z, 1, W)
    sampled = (batch.mask[0] != 0).expand_as(nonzero)
    return (sampled & nonzero)[None].to(torch.float32)
