"""The scan's k-space splits for scan-specific training (ZS-SSDU).

Every item's measured samples ``Omega`` are split once into a validation set ``Gamma`` and a
training pool; every training step splits the pool afresh into the network input ``Theta`` and
the loss set ``Lambda`` (:mod:`gleam_mri.selfsup`).
"""

from __future__ import annotations

import numpy as np

from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import evenly_spread
from gleam_mri.selfsup.data import with_split
from gleam_mri.selfsup.split import SplitError, Splitter, validation_seed

__all__ = ["Splits"]


class Splits:
    """Per item: the fixed validation split and a training split every step (module docstring).

    ``options``: :class:`~gleam_mri.adapt.zero_shot.AdaptOptions` (``seed``, ``val_fraction``,
    ``fraction``, ``batch_size``, ``max_val_items``).
    """

    def __init__(self, items: list[MRIBatch], options, splitter: Splitter) -> None:
        self.items, self.options, self.splitter = items, options, splitter
        self.pool, self.validation = [], []
        for i, item in enumerate(items):
            measured = item.mask[0].bool()
            seed = validation_seed(options.seed, i)
            try:
                pool, held = splitter(measured, options.val_fraction, item.fft_ndim, seed)
                splitter(pool, options.fraction, item.fft_ndim, seed)  # a training split fits
            except SplitError as err:
                where = item.meta[0].get("file", "the scan") if item.meta else "the scan"
                raise SplitError(f"{where}: {err}") from None
            self.pool.append(pool)
            self.validation.append(with_split(item, 0, pool, held))

    def _training_split(self, i: int, seed: int) -> MRIBatch:
        item = self.items[i]
        kept, held = self.splitter(self.pool[i], self.options.fraction, item.fft_ndim, seed)
        return with_split(item, 0, kept, held)

    def training_batch(self, step: int) -> MRIBatch:
        """Batch of ``step``: items in a per-epoch random order, each freshly split."""
        size, n = self.options.batch_size, len(self.items)
        chosen = []
        for k in range(step * size, (step + 1) * size):
            epoch, offset = divmod(k, n)
            order = np.random.default_rng([self.options.seed, epoch]).permutation(n)
            chosen.append(int(order[offset]))
        parts = []
        for k, i in enumerate(chosen):
            seed = int(np.random.SeedSequence([self.options.seed, step, k]).generate_state(1)[0])
            parts.append(self._training_split(i, seed))
        return collate_batches(parts)

    def validation_items(self) -> list[MRIBatch]:
        """At most ``max_val_items`` validation items, spread evenly over the scan."""
        picks = evenly_spread(len(self.validation), self.options.max_val_items)
        return [self.validation[i] for i in picks]
