"""Self-supervised batches: each item's measured k-space split into network input and loss.

:func:`split_batch` turns an :class:`MRIBatch` into one whose ``kspace`` / ``mask`` hold only the
network's share ``Theta`` of the measured samples and whose ``loss_kspace`` / ``loss_mask`` hold
the disjoint rest ``Lambda`` (:mod:`gleam_mri.selfsup.split`). :class:`SelfSupervisedDataset`
wraps a data set so that every item is split: with a fresh split each training step (the seed
comes from the step's mask seed, so a resumed run draws the same splits) or, for validation, a
fixed split per item.

Measured samples are those the mask selects *and* where some coil's k-space is nonzero, so
undersampled files stored with zeros at the unmeasured locations and no ``mask`` dataset are read
correctly.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.selfsup.split import SplitError, Splitter


def measured_samples(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bool ``(1, *D)``: where ``mask`` (broadcastable to ``(1, *D)``) samples and some coil of
    ``kspace`` ``(C, *D)`` is nonzero."""
    sampled = (mask != 0).expand(1, *kspace.shape[1:])
    return sampled & (kspace.abs().sum(dim=0, keepdim=True) > 0)


def measured_mask(batch: MRIBatch, index: int) -> torch.Tensor:
    """Bool ``(1, *D)``: the measured samples of item ``index`` (mask and nonzero k-space)."""
    return measured_samples(batch.kspace[index], batch.mask[index])


def with_split(batch: MRIBatch, index: int, network: torch.Tensor, loss: torch.Tensor) -> MRIBatch:
    """Item ``index`` as a B=1 batch fed ``network`` (bool ``(1, *D)``), held out ``loss``."""
    kspace = batch.kspace[index : index + 1]
    keep = network[None].to(torch.float32)
    held = loss[None].to(torch.float32)
    return MRIBatch(
        kspace=kspace * keep,
        mask=keep,
        maps=batch.maps[index : index + 1],
        target=None if batch.target is None else batch.target[index : index + 1],
        scale=batch.scale[index : index + 1],
        fft_ndim=batch.fft_ndim,
        meta=[dict(batch.meta[index])] if batch.meta else [],
        loss_kspace=kspace * held,
        loss_mask=held,
    )


def split_batch(
    batch: MRIBatch, fraction: float, splitter: Splitter, seeds: Sequence[int]
) -> MRIBatch:
    """Every item split: ``fraction`` of its measured samples held out for the loss.

    ``seeds`` (one per item) seed the draws. Raises :class:`SplitError` naming the item's file
    when its samples cannot be split.
    """
    items = []
    for b, seed in enumerate(seeds):
        measured = measured_mask(batch, b)
        try:
            kept, held = splitter(measured, fraction, batch.fft_ndim, seed)
        except SplitError as err:
            where = batch.meta[b].get("file", "an item") if batch.meta else "an item"
            raise SplitError(f"{where}: {err}") from None
        items.append(with_split(batch, b, kept, held))
    return collate_batches(items)


def item_seed(meta: dict[str, Any]) -> int:
    """Fixed split seed of an item (its file name and slice), for validation."""
    return zlib.crc32(f"ssdu/{meta.get('fname', meta.get('file'))}/{meta.get('slice')}".encode())


class SelfSupervisedDataset(Dataset):
    """``dataset`` with every item split (module docstring); same ``get`` / ``infos`` interface.

    ``fixed``: one split per item (validation); otherwise the split seed follows the mask seed
    that the training loop passes for (run seed, step, item).
    """

    def __init__(self, dataset: Any, fraction: float, splitter: Splitter, fixed: bool) -> None:
        self.dataset = dataset
        self.fraction = float(fraction)
        self.splitter = splitter
        self.fixed = bool(fixed)

    @property
    def infos(self) -> list:
        return self.dataset.infos

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> MRIBatch:
        return self.get(item)

    def get(self, item: int, mask_seed: int | None = None) -> MRIBatch:
        """Item ``item`` split; the draw is seeded by ``mask_seed`` (training) or the item."""
        batch = self.dataset.get(item, mask_seed=mask_seed)
        if self.fixed or mask_seed is None:
            seed = item_seed(batch.meta[0] if batch.meta else {"slice": item})
        else:
            seed = int(np.random.SeedSequence([int(mask_seed), 1]).generate_state(1)[0])
        return split_batch(batch, self.fraction, self.splitter, [seed])
