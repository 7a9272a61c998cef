"""The run configuration as the training stack reads it: the ``strategy`` section checked by
the strategies' own options (:data:`~gleam_mri.training.strategies.STRATEGIES`).

:mod:`gleam_mri.config` holds the dataclasses and reads YAML and overrides; it does not import the
strategies, which sit above it. These two functions give it the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gleam_mri.config import Config, parse_config, read_config
from gleam_mri.training.strategies import STRATEGIES

__all__ = ["config_from_dict", "load_config"]


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None``: defaults only), apply ``key.sub=value`` overrides, validate
    (:func:`gleam_mri.config.read_config` with the project's strategies)."""
    return read_config(path, overrides, STRATEGIES)


def config_from_dict(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> Config:
    """Build and validate a :class:`Config` from a nested dict (e.g. one stored in a checkpoint)."""
    return parse_config(data, overrides, STRATEGIES)
