"""``gleam convert``: raw data (ISMRMRD HDF5, Siemens twix, BART CFL) -> the fastMRI layout.

Converted files are ordinary fastMRI-layout files (:mod:`gleam_mri.data.fastmri`) that ``gleam
recon``, ``gleam eval`` and the datasets read; files without coil maps get ESPIRiT maps there.
"""

from __future__ import annotations

from pathlib import Path

from gleam_mri.data.raw import read_raw
from gleam_mri.data.readout_slices import convert_readout_slices

__all__ = ["convert"]


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
    if slices == "readout":
        return convert_readout_slices(path, out, maps=maps, partitions=partitions)
    if slices != "native":
        raise ValueError(f'slices must be "native" or "readout", got {slices!r}')
    if maps not in (None, "none"):
        raise ValueError("maps are computed only for --slices readout")
    return read_raw(path, partitions).to_fastmri(out)
