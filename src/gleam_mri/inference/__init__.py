"""Trained networks in use: the PyTorch engine, ``gleam eval`` and ``gleam recon``, outputs.

- :mod:`~gleam_mri.inference.engine`: :func:`load_run` (a checkpoint's network, checked against
  its config) and :func:`reconstruct` (a batch).
- :mod:`~gleam_mri.inference.files`: :func:`evaluate_checkpoint` (``gleam eval``: per-volume
  metrics) and :func:`reconstruct_file` / :func:`reconstruct_with_run` (``gleam recon``: any
  fastMRI-layout or raw file, slab by slab for 3D).
- :mod:`~gleam_mri.inference.outputs`: :func:`write_outputs` as HDF5 ``reconstruction``, NIfTI,
  PNG and DICOM.
- :mod:`~gleam_mri.inference.command`: the ``gleam eval`` and ``gleam recon`` command lines.
"""

from __future__ import annotations

from gleam_mri.inference.engine import load_run, reconstruct
from gleam_mri.inference.files import (
    evaluate_checkpoint,
    is_fastmri_layout,
    output_crop,
    reconstruct_file,
    reconstruct_with_run,
    write_metrics,
)
from gleam_mri.inference.outputs import OUTPUT_FORMATS, write_outputs

__all__ = [
    "OUTPUT_FORMATS",
    "evaluate_checkpoint",
    "is_fastmri_layout",
    "load_run",
    "output_crop",
    "reconstruct",
    "reconstruct_file",
    "reconstruct_with_run",
    "write_metrics",
    "write_outputs",
]
