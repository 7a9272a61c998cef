"""Data: fastMRI-layout HDF5 files, raw-data readers (ISMRMRD, Siemens twix, BART CFL) and
``gleam convert``, the readers' limits, data sets and batches, 3D readout slabs, the synthetic
set; ``gleam simulate``, ``gleam info`` and ``gleam convert`` (``command``).

The public names below are loaded on first use: the file readers need no torch, and a process
that only reads a file (``gleam serve``'s quarantine child, a fuzz target) does not import it.
``gleam convert``'s function is :func:`gleam_mri.data.convert.convert` (its module's name).
"""

from __future__ import annotations

from gleam_mri.lazy import lazy_names

_PUBLIC = {  # name -> the module of this package that defines it
    "DatasetError": "errors",
    "FastMRIFileNotFoundError": "errors",
    "FastMRIFormatError": "errors",
    "inspect_fastmri": "fastmri",
    "read_fastmri": "fastmri",
    "write_fastmri": "fastmri",
    "RawKspace": "raw_kspace",
    "detect_format": "raw",
    "read_raw": "raw",
    "MRIBatch": "batch",
    "collate_batches": "batch",
    "SliceDataset": "datasets",
    "VolumeDataset": "datasets",
    "open_dataset": "datasets",
    "SlabDataset": "slabs",
    "reconstruct_volume_in_slabs": "slabs",
    "SyntheticSpec": "synthetic",
    "write_synthetic_dataset": "synthetic",
}

__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
