"""What a run trains and validates on, read from its config: the split's data set (slices,
volumes or readout slabs) and, under self-supervision, its split into input and held-out k-space."""

from __future__ import annotations

from pathlib import Path

from gleam_mri.config import Config, SSDUConfig
from gleam_mri.data.datasets import open_dataset
from gleam_mri.data.slabs import SlabDataset
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.selfsup import SelfSupervisedDataset, Splitter

__all__ = ["splitter_from_config", "training_dataset"]


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
