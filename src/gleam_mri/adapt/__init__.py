"""Scan-specific training (``gleam adapt``, ZS-SSDU): a network fitted to one undersampled scan's
own k-space, with no reference, then used to reconstruct that scan.

- :mod:`~gleam_mri.adapt.scan`: one file as a training set (items, measured samples, maps).
- :mod:`~gleam_mri.adapt.zero_shot`: :func:`adapt` (validation hold-out, early stopping, the
  weights kept) and what it writes.
- :mod:`~gleam_mri.adapt.command`: the ``gleam adapt`` command line.
"""

from __future__ import annotations

from gleam_mri.adapt.scan import Scan, load_scan
from gleam_mri.adapt.zero_shot import DEFAULT_CONFIG, AdaptOptions, AdaptResult, adapt

__all__ = ["DEFAULT_CONFIG", "AdaptOptions", "AdaptResult", "Scan", "adapt", "load_scan"]
