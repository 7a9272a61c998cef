"""Raw-data files (ISMRMRD HDF5, Siemens twix, BART CFL) read into gleam's k-space layout.

The format is recognised from the file itself: ``.dat`` files are Siemens twix, ``.cfl`` /
``.hdr`` pairs are BART, HDF5 files with ``/dataset`` are ISMRMRD raw data. :func:`read_raw`
returns a :class:`~gleam_mri.data.raw_kspace.RawKspace`; :mod:`gleam_mri.data.convert` writes it
in the fastMRI layout.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.raw_kspace import RawKspace

__all__ = ["FORMATS", "detect_format", "read_raw"]

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
        from gleam_mri.data.cfl import read_cfl_kspace

        return read_cfl_kspace(path)
    if fmt == "twix":
        from gleam_mri.data.twix import read_twix

        return read_twix(path)
    from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw

    return read_ismrmrd_raw(path, partitions=partitions)
