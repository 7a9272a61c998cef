"""The training stack: the one driver (``loop``: :func:`fit`, :func:`train`), the run and its
checkpoints (``run``, ``checkpoint``, ``stage_checkpoints``), the data it trains on (``data``),
the weights it keeps (``selection``), the strategies (``strategies``: end to end, checkpointed,
invertible, greedy, pipelined greedy, each with its options and costs), losses, optimizers,
errors, logging and the process group of a distributed run; ``gleam train`` (``command``).

A run config is read with :func:`load_config` / :func:`config_from_dict`, which check its
``strategy`` section against the strategies."""

from __future__ import annotations

from gleam_mri.training.checkpoint import load_checkpoint, save_checkpoint
from gleam_mri.training.data import TrainingData, folder_data, source_data
from gleam_mri.training.loop import TrainingStopped, fit, train
from gleam_mri.training.losses import build_loss, training_loss
from gleam_mri.training.run import Run
from gleam_mri.training.run_config import config_from_dict, load_config
from gleam_mri.training.selection import WeightSelection
from gleam_mri.training.strategies import (
    STRATEGIES,
    Strategy,
    StrategyOptions,
    build_strategy,
    strategy_from_config,
    strategy_settings,
)

__all__ = [
    "STRATEGIES",
    "Run",
    "Strategy",
    "StrategyOptions",
    "TrainingData",
    "TrainingStopped",
    "WeightSelection",
    "build_loss",
    "build_strategy",
    "config_from_dict",
    "fit",
    "folder_data",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "source_data",
    "strategy_from_config",
    "strategy_settings",
    "train",
    "training_loss",
]
