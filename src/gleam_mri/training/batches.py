"""Deterministic training batches: batch ``step`` depends only on (seed, step), never on history.

That is what makes a resumed run bit-identical to an uninterrupted one on CPU: the data order is a
per-epoch permutation seeded by ``(seed, epoch)`` and every item's mask seed is derived from
``(seed, step, item)``, so restarting at step ``s`` reproduces batches ``s, s+1, ...`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import DataLoader, Dataset, Subset

from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import SliceDataset, VolumeDataset


class StepBatches(Dataset):
    """``batches[step]`` is the collated :class:`MRIBatch` of training step ``step``.

    ``shard=(i, n)``: only the ``i``-th of ``n`` equal, contiguous parts of every batch (data
    parallelism: replica ``i`` loads only its own items).
    """

    def __init__(
        self,
        dataset: SliceDataset | VolumeDataset,
        batch_size: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        index, count = (int(v) for v in shard)
        if count < 1 or batch_size % count or not 0 <= index < count:
            raise ValueError(
                f"cannot take shard {index} of {count} of batches of {batch_size} items (the "
                "batch size must be a multiple of the number of data-parallel replicas)"
            )
        self.shard = (index, count)
        if len(dataset) < batch_size:
            raise ValueError(
                f"the training set has {len(dataset)} items, fewer than one batch of {batch_size}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.per_epoch = len(dataset) // batch_size  # the incomplete last batch is dropped

    def __len__(self) -> int:
        return 2**62  # indexed by step; the loop decides how many steps to take

    def indices(self, step: int) -> list[int]:
        """Dataset indices of the items of batch ``step``."""
        epoch, offset = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return [int(i) for i in order[offset * self.batch_size : (offset + 1) * self.batch_size]]

    def mask_seed(self, step: int, item: int) -> int:
        """Mask seed of dataset item ``item`` in batch ``step``."""
        return int(np.random.SeedSequence([self.seed, step, item]).generate_state(1)[0])

    def __getitem__(self, step: int) -> MRIBatch:
        """The batch of ``step`` (only this shard's items: equal to ``full.shard(*shard)``)."""
        index, count = self.shard
        mine = self.indices(step)
        size = len(mine) // count
        mine = mine[index * size : (index + 1) * size]
        return collate_batches(
            [self.dataset.get(i, mask_seed=self.mask_seed(step, i)) for i in mine]
        )


def step_loader(batches: StepBatches, start: int, stop: int, num_workers: int = 0) -> DataLoader:
    """Loader over steps ``start .. stop-1`` (each element is one collated batch)."""
    return DataLoader(
        batches,
        sampler=range(start, stop),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
    )


def validation_loader(
    dataset: SliceDataset | VolumeDataset, batch_size: int, max_items: int | None = None
) -> DataLoader:
    """Loader over (the first ``max_items`` of) a validation set, in order."""
    data: Sequence = dataset
    if max_items is not None and max_items < len(dataset):
        data = Subset(dataset, range(max_items))
    return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_batches)
