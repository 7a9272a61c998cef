"""The names of the image losses, listed once (the config, the strategies' options, the bench
and :mod:`gleam_mri.training.losses`, which builds them, read them from here)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["LOSS_NAMES", "LossName"]

LossName = Literal["l1", "mse", "ssim", "l1+ssim"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
