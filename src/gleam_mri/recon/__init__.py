"""Reconstruction without learning, and the scoring of any reconstructor: zero-filled and
CG-SENSE (``classical``), per-volume fastMRI metrics of a data set (``evaluate``), the classical
baselines of ``gleam baseline`` (``baselines``, ``command``)."""

from __future__ import annotations

from gleam_mri.recon.baselines import default_mask_spec, run_baselines
from gleam_mri.recon.classical import cg_sense, zero_filled
from gleam_mri.recon.evaluate import VolumeResult, classical_reconstructor, evaluate, summarize

__all__ = [
    "VolumeResult",
    "cg_sense",
    "classical_reconstructor",
    "default_mask_spec",
    "evaluate",
    "run_baselines",
    "summarize",
    "zero_filled",
]
