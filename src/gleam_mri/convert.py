"""``gleam convert``: raw data (ISMRMRD HDF5, Siemens twix, BART CFL) -> the fastMRI layout.

The format is recognised from the file itself: ``.dat`` files are Siemens twix, ``.cfl`` /
``.hdr`` pairs are BART, HDF5 files with ``/dataset`` are ISMRMRD raw data. Converted files are
ordinary fastMRI-layout files (:mod:`gleam_mri.data.fastmri`) that ``gleam recon``, ``gleam eval``
and the datasets read; files without coil maps get ESPIRiT maps there.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.raw_kspace import RawKspace

FORMATS = ("ismrmrd", "twix", "cfl")


def detect_format(path: str | Path) -> str:
    """``"ismrmrd"``, ``"twix"`` or ``"cfl"`` for a raw-data file; clear errors otherwise."""
    path = Path(path)
    if path.suffix in (".cfl", ".hdr") or path.with_suffix(".hdr").exists():
        return "cfl"
    if not path.exists():
        raise FastMRIFileNotFoundError(path, "no such file")
    if path.suffix == ".dat":
        return "twix"
    if h5py.is_hdf5(path):
        try:
            hf = h5py.File(path, "r")
        except OSError as err:
            raise FastMRIFormatError(
                path, f"an HDF5 file that cannot be opened (truncated or corrupt): {err}"
            ) from err
        with hf:
            try:
                has_dataset, has_kspace = "dataset" in hf, "kspace" in hf
            except (OSError, RuntimeError, KeyError) as err:
                raise FastMRIFormatError(path, f"corrupt HDF5 file: {err}") from err
            if has_dataset:
                return "ismrmrd"
            if has_kspace:
                raise FastMRIFormatError(path, "already in the fastMRI layout: nothing to convert")
    raise FastMRIFormatError(
        path, "not a recognised raw-data file (ISMRMRD .h5, Siemens twix .dat or BART .cfl/.hdr)"
    )


def read_cfl_kspace(path: str | Path) -> RawKspace:
    """BART k-space ``(READ, PHS1, PHS2, COIL, ..., TIME)`` as one gleam sample, mask from zeros."""
    from gleam_mri.data.cfl import PHS2_DIM, TIME_DIM, cfl_to_gleam, read_cfl

    base = Path(path).with_suffix("")
    bart = read_cfl(base)
    dims = bart.shape + (1,) * (16 - bart.ndim)
    kind = "cine" if dims[TIME_DIM] > 1 else "3d" if dims[PHS2_DIM] > 1 else "2d"
    try:
        kspace = cfl_to_gleam(bart)[None]  # (1, C, *D)
    except ValueError as err:
        raise FastMRIFormatError(base.with_suffix(".cfl"), str(err)) from err
    sampled = np.abs(kspace).sum(axis=(1, -2)) > 0  # (1, W) or (1, Z|T, W)
    mask = sampled[:, None, None, :] if kind == "2d" else sampled[:, None, :, None, :]
    return RawKspace(kspace, mask, {}, kind, base.with_suffix(".cfl"))


def read_raw(path: str | Path, partitions: str = "kz") -> RawKspace:
    """Read any supported raw-data file into gleam's k-space layout.

    ``partitions``: where an ISMRMRD file keeps a 3D acquisition's partitions
    (:data:`~gleam_mri.data.ismrmrd_raw.PARTITIONS`); other formats take only ``"kz"``."""
    fmt = detect_format(path)
    if partitions != "kz" and fmt != "ismrmrd":
        raise FastMRIFormatError(
            path, f"partitions={partitions!r} applies to ISMRMRD files only; this is {fmt}"
        )
    if fmt == "cfl":
        return read_cfl_kspace(path)
    if fmt == "twix":
        from gleam_mri.data.twix import read_twix

        return read_twix(path)
    from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw

    return read_ismrmrd_raw(path, partitions=partitions)


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
        from gleam_mri.data.readout_slices import convert_readout_slices

        return convert_readout_slices(path, out, maps=maps, partitions=partitions)
    if slices != "native":
        raise ValueError(f'slices must be "native" or "readout", got {slices!r}')
    if maps not in (None, "none"):
        raise ValueError("maps are computed only for --slices readout")
    return read_raw(path, partitions).to_fastmri(out)
