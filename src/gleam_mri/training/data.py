"""What a run trains and validates on: :class:`TrainingData`.

By default the config's folders (:func:`folder_data`): the split's data set (slices, volumes or
readout slabs) and, under self-supervision, its split into input and held-out k-space. A caller
with data of its own (one scan for ``gleam adapt``, synthetic batches in tests) gives any
step-indexed source of batches (:func:`source_data`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from gleam_mri.config import Config, SSDUConfig
from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.slabs import SlabDataset
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.selfsup import SelfSupervisedDataset, Splitter
from gleam_mri.training.batches import StepBatches, validation_loader

__all__ = [
    "TrainingData",
    "folder_data",
    "source_data",
    "splitter_from_config",
    "training_dataset",
]

Shard = tuple[int, int]


@dataclass
class TrainingData:
    """The data of a run.

    ``batches(shard)``: a dataset indexed by step whose item ``t`` is this process's part
    ``shard = (i, n)`` of the batch of training step ``t`` (a function of the step alone, so that
    a resumed run sees the same batches); ``validation``: the validation batches, in order
    (iterable again at every validation); ``kind``: ``"2d"``, ``"3d"`` or ``"cine"``;
    ``identity``: what the data is (``None``: not checked), stored in the run's checkpoints, and
    a run resumed on other data is refused.
    """

    kind: str
    batches: Callable[[Shard], Dataset]
    validation: Iterable[MRIBatch]
    identity: Any = None


class _Sharded(Dataset):
    """Part ``shard`` of each batch of a step-indexed source."""

    def __init__(self, source: Callable[[int], MRIBatch], shard: Shard) -> None:
        self.source, self.shard = source, shard

    def __len__(self) -> int:
        return 2**62  # indexed by step

    def __getitem__(self, step: int) -> MRIBatch:
        batch = self.source(step)
        return batch if self.shard[1] == 1 else batch.shard(*self.shard)


def source_data(
    kind: str,
    batch_for_step: Callable[[int], MRIBatch],
    validation: Iterable[MRIBatch] = (),
    identity: Any = None,
) -> TrainingData:
    """:class:`TrainingData` of a step-indexed source: ``batch_for_step(t)`` is the whole batch
    of step ``t`` (the same on every process of a pipeline; each takes its shard)."""
    return TrainingData(kind, lambda shard: _Sharded(batch_for_step, shard), validation, identity)


def folder_data(cfg: Config) -> TrainingData:
    """The config's training and validation splits (``data.root``), batched by
    :class:`~gleam_mri.training.batches.StepBatches` (seeded by ``train.seed``)."""
    root, data = Path(cfg.data.root), cfg.data
    train_set = training_dataset(cfg, root / data.train_split)
    val_set = training_dataset(cfg, root / data.val_split, deterministic_masks=True)

    def batches(shard: Shard) -> Dataset:
        return StepBatches(train_set, data.batch_size, cfg.train.seed, shard=shard)

    validation = validation_loader(val_set, data.batch_size, data.max_val_items)
    return TrainingData(train_set.infos[0].kind, batches, validation)


def training_dataset(cfg: Config, folder: Path, deterministic_masks: bool = False):
    """The dataset of a split: slices / volumes, or readout slabs of 3D volumes (``data.slab``).

    Under ``train.supervision: self`` every item is split into network input and held-out
    k-space (:mod:`gleam_mri.selfsup`): afresh each step for training, fixed (the
    ``ssdu.val_fraction`` share) for validation (``deterministic_masks``).
    """
    if cfg.data.slab is None:
        dataset = open_dataset(folder, cfg.data.mask, cfg.data.maps, deterministic_masks)
    else:
        dataset = SlabDataset(
            folder,
            cfg.data.slab,
            cfg.data.slab_overlap,
            mask_func=build_mask_func(cfg.data.mask) if cfg.data.mask else None,
            maps=cfg.data.maps,
            deterministic_masks=deterministic_masks,
        )
    if cfg.train.supervision != "self":
        return dataset
    fraction = cfg.ssdu.val_fraction if deterministic_masks else cfg.ssdu.fraction
    return SelfSupervisedDataset(
        dataset, fraction, splitter_from_config(cfg.ssdu), deterministic_masks
    )


def splitter_from_config(ssdu: SSDUConfig) -> Splitter:
    """The :class:`~gleam_mri.selfsup.split.Splitter` of a config's ``ssdu`` section."""
    return Splitter(ssdu.selection, ssdu.keep_center, ssdu.keep_calibration, ssdu.units)
