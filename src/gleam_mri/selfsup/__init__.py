"""Self-supervised (SSDU) and scan-specific (ZS-SSDU) training from undersampled data only.

- :mod:`~gleam_mri.selfsup.split`: disjoint splits of the measured k-space locations.
- :mod:`~gleam_mri.selfsup.loss`: the normalised l1 + l2 loss on held-out k-space.
- :mod:`~gleam_mri.selfsup.data`: self-supervised batches and data sets (``train.supervision``).
- :mod:`~gleam_mri.selfsup.adapt`: ``gleam adapt``, a network trained on one scan alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gleam_mri.selfsup.data import SelfSupervisedDataset, measured_mask, split_batch
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.selfsup.split import SplitError, Splitter, hold_out

if TYPE_CHECKING:
    from gleam_mri.config import SSDUConfig


def splitter_from_config(ssdu: SSDUConfig) -> Splitter:
    """The :class:`Splitter` of a config's ``ssdu`` section."""
    return Splitter(ssdu.selection, ssdu.keep_center, ssdu.keep_calibration, ssdu.units)


__all__ = [
    "KspaceLoss",
    "SelfSupervisedDataset",
    "SplitError",
    "Splitter",
    "hold_out",
    "measured_mask",
    "split_batch",
    "splitter_from_config",
]
