"""Run configuration: nested dataclasses loaded from YAML, with dotted overrides.

A config file mirrors :class:`Config`; missing sections and keys take the defaults below::

    name: knee-pgd
    data: {root: data/knee, kind: 2d, mask: {name: random, center_fractions: [0.08],
           accelerations: [4]}}
    model: {name: pgd, unrolls: 8, dc: {step_init: 1.0}}
    strategy: {name: greedy, modules: 4}
    optim: {name: Adam, lr: 1.0e-3}
    train: {steps: 1000, loss: l1}

Overrides ``section.key=value`` (``gleam train --set ...``) are applied after the file. The value
is parsed as YAML, so ``model.unrolls=16``, ``strategy.modules=null`` and
``data.mask={name: equispaced, center_fractions: [0.08], accelerations: [8]}`` work. A dotted key
that goes *into* a dict field (``model.dc.cg_iters=10``) sets that entry and keeps the others;
setting the dict field itself (in the file or an override) replaces it. Float fields also accept
strings such as ``1e-3``, which YAML 1.1 reads as a string because there is no dot.

The counters ``train.val_every``, ``ckpt_every``, ``log_every`` and ``image_every`` disable their
action when 0. Every error is a :class:`ConfigError` naming the key, the bad value and what was
expected, prefixed with the file or the override it came from.

The ``strategy`` section is checked by the strategies' own ``Options`` classes, which live with
the training stack above this module: :func:`read_config` and :func:`parse_config` take the table
of strategies as an argument, and ``gleam_mri.training.load_config`` /
``gleam_mri.training.config_from_dict`` pass the project's (``STRATEGIES``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gleam_mri.loss_names import LossName
from gleam_mri.overrides import apply_override, override_origin, parse_override
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.schema import (
    ConfigError,
    at_least,
    build,
    plain,
    show,
    suggest,
)
from gleam_mri.strategy_section import StrategyConfig, options_from, read_strategy

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "SSDUConfig",
    "StrategyConfig",
    "TrainConfig",
    "config_to_dict",
    "optimizer_names",
    "options_from",
    "parse_config",
    "read_config",
    "read_strategy",
    "save_config",
    "scheduler_names",
]


def _default_mask() -> dict[str, Any]:
    return {"name": "random", "center_fractions": [0.08], "accelerations": [4]}


@dataclass
class DataConfig:
    """Data folder (with ``train``/``val``/``test``), undersampling and loading."""

    root: str = "data"
    kind: Literal["2d", "3d", "cine"] = "2d"
    mask: dict[str, Any] = field(default_factory=_default_mask)  # for build_mask_func
    maps: Literal["file", "espirit"] = "file"
    batch_size: int = field(default=1, metadata=at_least(1))
    num_workers: int = field(default=0, metadata=at_least(0))
    train_split: str = "train"
    val_split: str = "val"
    max_val_items: int | None = field(default=None, metadata=at_least(1))
    slab: int | None = field(default=None, metadata=at_least(1))  # 3D: train on readout slabs
    slab_overlap: int = field(default=0, metadata=at_least(0))  # 3D slab inference overlap


@dataclass
class ModelConfig:
    """The unrolled network: iteration count, regulariser, data consistency (``dc``)."""

    name: Literal["pgd", "modl", "varnet"] = "pgd"
    unrolls: int = field(default=8, metadata=at_least(1))
    regularizer: Literal["resnet", "unet"] = "resnet"
    features: int = field(default=64, metadata=at_least(1))
    blocks: int = field(default=5, metadata=at_least(1))
    levels: int = field(default=3, metadata=at_least(1))
    shared_weights: bool = False
    invertible: bool = False
    # bound on each regulariser convolution's spectral norm (for MEL; see models/lipschitz.py)
    spectral_bound: float | None = field(default=None, metadata=at_least(0, strict=True))
    dc: dict[str, Any] = field(default_factory=dict)  # e.g. step_init, lam_init, cg_iters
    sens_features: int = field(default=8, metadata=at_least(1))  # varnet sensitivity network
    sens_levels: int = field(default=3, metadata=at_least(1))
    sens_chunk: int | None = field(default=None, metadata=at_least(1))  # coils per ckpt chunk
    dims: Literal["auto", "2d", "3d", "2d+t"] = "auto"


@dataclass
class OptimConfig:
    """Optimizer and scheduler, by ``torch.optim`` / ``torch.optim.lr_scheduler`` class name."""

    name: str = "Adam"
    lr: float = field(default=1e-3, metadata=at_least(0, strict=True))
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. weight_decay
    scheduler: str | None = None
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_clip: float | None = field(default=None, metadata=at_least(0, strict=True))
    amp: bool = False  # bf16 autocast


@dataclass
class TrainConfig:
    """The loop: length, logging/validation/checkpoint periods (0 disables), loss, device.

    Which weights the run ends with (:mod:`gleam_mri.training.selection`): ``keep: best`` keeps
    those of the validation with the lowest ``val/loss`` (the run's checkpoint is then
    ``best.pt``), ``patience`` stops after that many validations in a row without improvement
    (0: never), ``average`` validates and keeps a moving average of the weights with this decay
    (0: off). ``measure_memory``: record the peak memory of the first training step.
    """

    steps: int = field(default=1000, metadata=at_least(1))
    val_every: int = field(default=200, metadata=at_least(0))
    ckpt_every: int = field(default=500, metadata=at_least(0))
    log_every: int = field(default=20, metadata=at_least(0))
    seed: int = 0
    loss: LossName = "l1"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs/default"
    tensorboard: bool = True
    image_every: int = field(default=500, metadata=at_least(0))
    supervision: Literal["target", "self"] = "target"  # self: SSDU k-space splits, no target
    keep: Literal["last", "best"] = "last"
    patience: int = field(default=0, metadata=at_least(0))
    average: float = field(default=0.0, metadata=at_least(0))
    measure_memory: bool = False


@dataclass
class SSDUConfig:
    """Self-supervised splits (``train.supervision: self``; :mod:`gleam_mri.selfsup`).

    ``fraction``: share of each item's measured samples held out for the loss, drawn afresh
    every step (SSDU's rho = 0.4); ``val_fraction``: the fixed held-out share of validation
    items, on which ``val/loss`` is computed; ``selection``: ``gaussian`` (denser near the
    centre) or ``uniform``; ``keep_center``: a central block of this size per Fourier axis is
    never held out; ``keep_calibration``: nor is the fully sampled calibration region;
    ``units``: ``points`` (SSDU) or ``lines`` (whole lines along the axes a line mask samples
    fully, the readout: the held-out sets then look like the lines the mask left out).
    """

    fraction: float = field(default=0.4, metadata=at_least(0, strict=True))
    val_fraction: float = field(default=0.2, metadata=at_least(0, strict=True))
    selection: Literal["gaussian", "uniform"] = "gaussian"
    keep_center: int = field(default=4, metadata=at_least(0))
    keep_calibration: bool = False
    units: Literal["points", "lines"] = "points"


@dataclass
class Config:
    """A whole run."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ssdu: SSDUConfig = field(default_factory=SSDUConfig)


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config file does not exist (also a :class:`FileNotFoundError`)."""


# ---------------------------------------------------------------------------- public functions


def read_config(
    path: str | Path | None, overrides: Sequence[str], strategies: Mapping[str, Any]
) -> Config:
    """Read a YAML config (``None``: defaults only), apply ``key.sub=value`` overrides, validate;
    the ``strategy`` section against ``strategies`` (name -> class with an ``Options``
    dataclass). ``gleam_mri.training.load_config`` passes the project's strategies."""
    raw: dict[str, Any] = {}
    source = None
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
    return _from_raw(raw, overrides, source, strategies)


def parse_config(
    data: Mapping[str, Any], overrides: Sequence[str], strategies: Mapping[str, Any]
) -> Config:
    """Build and validate a :class:`Config` from a nested dict (e.g. one stored in a checkpoint),
    as :func:`read_config` (``gleam_mri.training.config_from_dict`` passes the strategies)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping, got {show(data)}")
    return _from_raw(copy.deepcopy(dict(data)), overrides, None, strategies)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as nested plain dicts, lists and scalars (YAML- and checkpoint-safe)."""
    return plain(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the config as YAML (parent folders are created); :func:`read_config` reads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- reading, overrides


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigFileNotFoundError("config file does not exist", source=str(path))
    if not path.is_file():
        raise ConfigError("config path is not a file", source=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=str(path)) from exc
    if data is None:  # empty file: all defaults
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of sections, got {show(data)}", source=str(path)
        )
    return data


def _from_raw(
    raw: dict[str, Any],
    overrides: Sequence[str],
    source: str | None,
    strategies: Mapping[str, Any],
) -> Config:
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a sequence of strings, got the string {overrides!r}")
    raw = _with_defaults(raw)
    applied: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value, text)
        applied[".".join(keys)] = text
    try:
        section = raw.pop("strategy")
        cfg = build(Config, raw, "")
        cfg.strategy = read_strategy(section, "strategy", strategies)
        _check_semantics(cfg, strategies)
    except ConfigError as exc:
        origin = override_origin(exc.key, applied) or source
        raise ConfigError(exc.problem, exc.key, origin) from None
    return cfg


def _with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults as nested dicts, with the file's keys replacing them section by section."""
    full = config_to_dict(Config())
    for key, value in raw.items():
        if isinstance(full.get(key), dict) and isinstance(value, dict):
            full[key].update(value)
        elif not (value is None and isinstance(full.get(key), dict)):  # an empty section: defaults
            full[key] = value
    return full


# ---------------------------------------------------------------------------- validation


def _check_semantics(cfg: Config, strategies: Mapping[str, Any]) -> None:
    """Checks that need more than a field's type: torch names, the mask, the strategy's options."""
    optimizers = optimizer_names()
    if cfg.optim.name not in optimizers:
        problem = f"unknown optimizer {cfg.optim.name!r}{suggest(cfg.optim.name, optimizers)}"
        raise ConfigError(f"{problem}; expected a torch.optim class: {optimizers}", "optim.name")
    name = cfg.optim.scheduler
    if name is not None and name not in scheduler_names():
        schedulers = scheduler_names()
        problem = f"unknown scheduler {name!r}{suggest(name, schedulers)}"
        raise ConfigError(f"{problem}; expected one of {schedulers} or null", "optim.scheduler")
    try:
        build_mask_func(copy.deepcopy(cfg.data.mask))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid mask spec {cfg.data.mask!r}: {exc}", "data.mask") from None
    if cfg.train.average >= 1:
        problem = f"the decay of the weight average must lie in [0, 1), got {cfg.train.average}"
        raise ConfigError(problem, "train.average")
    selecting = {"keep": cfg.train.keep == "best", "patience": cfg.train.patience > 0}
    for key, used in selecting.items():
        if used and cfg.train.val_every == 0:
            problem = f"train.{key} selects by the validation loss: set train.val_every > 0"
            raise ConfigError(problem, f"train.{key}")
    for key in ("fraction", "val_fraction"):
        if getattr(cfg.ssdu, key) >= 1:
            problem = f"the held-out share must lie in (0, 1), got {getattr(cfg.ssdu, key)}"
            raise ConfigError(problem, f"ssdu.{key}")
    options_from(strategies[cfg.strategy.name].Options, cfg.strategy.options).check(cfg)


def optimizer_names() -> list[str]:
    """The ``torch.optim`` optimizer classes, by name (what ``optim.name`` accepts)."""
    import torch  # deferred: reading a config needs no torch until it is checked

    return _classes(torch.optim, torch.optim.Optimizer)


def scheduler_names() -> list[str]:
    """The ``torch.optim.lr_scheduler`` classes a per-step call can drive, by name."""
    import torch

    return _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)


def _classes(module: Any, base: type) -> list[str]:
    names = {n for n, o in vars(module).items() if isinstance(o, type) and issubclass(o, base)}
    return sorted(n for n in names if not n.startswith("_") and n != base.__name__)
