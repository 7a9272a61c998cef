"""``gleam convert``: raw data (ISMRMRD HDF5, Siemens twix, BART CFL) -> the fastMRI layout.

Converted files are ordinary fastMRI-layout files (:mod:`gleam_mri.data.fastmri`) that ``gleam
recon``, ``gleam eval`` and the datasets read; files without coil maps get ESPIRiT maps there.
A fastMRI-layout file given with ``--maps espirit`` is copied with ESPIRiT maps added
(:func:`with_espirit_maps`), for engines that need the maps in the file (the Java engine).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from gleam_mri.atomic import atomic_path
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.fastmri import inspect_fastmri, is_fastmri_layout
from gleam_mri.data.raw import read_raw
from gleam_mri.data.readout_slices import convert_readout_slices

__all__ = ["convert", "with_espirit_maps"]


def convert(
    path: str | Path,
    out: str | Path,
    slices: str = "native",
    maps: str | None = None,
    partitions: str = "kz",
) -> Path:
    """Convert a raw-data file to a fastMRI-layout HDF5 file ``out``; returns ``out``.

    ``slices="readout"`` writes a 3D acquisition as 2D slices along the readout, k-space
    ``(x, coils, ky, kz)``, with per-slice ESPIRiT maps when ``maps="espirit"``
    (:mod:`gleam_mri.data.readout_slices`). ``partitions`` as :func:`read_raw`.
    """
    if is_fastmri_layout(path):
        if maps != "espirit" or slices != "native":
            raise ValueError(
                f"{path}: already in the fastMRI layout; --maps espirit (alone) adds coil maps"
            )
        return with_espirit_maps(path, out)
    if slices == "readout":
        return convert_readout_slices(path, out, maps=maps, partitions=partitions)
    if slices != "native":
        raise ValueError(f'slices must be "native" or "readout", got {slices!r}')
    if maps not in (None, "none"):
        raise ValueError("maps are computed only for --slices readout")
    return read_raw(path, partitions).to_fastmri(out)


def with_espirit_maps(path: str | Path, out: str | Path) -> Path:
    """Copy the fastMRI-layout file ``path`` to ``out`` with a ``maps`` dataset: ESPIRiT maps of
    every item from its measured k-space (the file's mask, else all of it), as the datasets
    estimate them; returns ``out``. Refuses a file that holds maps, or ``out`` being ``path``."""
    path, out = Path(path), Path(out)
    info = inspect_fastmri(path)
    if info.has_maps:
        raise ValueError(f"{path}: already holds coil maps")
    if out.resolve() == path.resolve():
        raise ValueError(f"{path}: write the copy with maps elsewhere (-o another folder)")
    dataset = open_dataset(path, None, "espirit")
    maps = np.stack([dataset[i].maps[0].numpy() for i in range(len(dataset))])
    with h5py.File(path, "r") as hf:
        shape = hf["kspace"].shape
    if maps.shape != shape:
        raise ValueError(f"{path}: maps of {info.kind} items do not fit k-space {shape}")
    with atomic_path(out) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as hf:
            hf.create_dataset("maps", data=maps.astype(np.complex64))
    return out
