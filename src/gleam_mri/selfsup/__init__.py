"""Self-supervision (SSDU): training from undersampled data only, by holding k-space out.

- :mod:`~gleam_mri.selfsup.split`: disjoint splits of the measured k-space locations.
- :mod:`~gleam_mri.selfsup.loss`: the normalised l1 + l2 loss on held-out k-space.
- :mod:`~gleam_mri.selfsup.data`: self-supervised batches and data sets (``train.supervision``).

The training stack uses them for ``train.supervision: self``; ``gleam adapt``
(:mod:`gleam_mri.adapt`) trains on one scan alone with them.
"""

from __future__ import annotations

from gleam_mri.selfsup.data import SelfSupervisedDataset, measured_mask, split_batch
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.selfsup.split import SplitError, Splitter, hold_out

__all__ = [
    "KspaceLoss",
    "SelfSupervisedDataset",
    "SplitError",
    "Splitter",
    "hold_out",
    "measured_mask",
    "split_batch",
]
