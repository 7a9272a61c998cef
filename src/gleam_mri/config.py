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
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "StrategyConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]

LossName = Literal["l1", "mse", "ssim", "l1+ssim"]


def _min(bound: float, *, strict: bool = False) -> dict[str, Any]:
    """Field metadata: the value (when not None) must be >= bound (> bound when strict)."""
    return {"min": bound, "strict": strict}


def _default_mask() -> dict[str, Any]:
    return {"name": "random", "center_fractions": [0.08], "accelerations": [4]}


@dataclass
class DataConfig:
    """Data folder (with ``train``/``val``/``test``), undersampling and loading."""

    root: str = "data"
    kind: Literal["2d", "3d", "cine"] = "2d"
    mask: dict[str, Any] = field(default_factory=_default_mask)  # for build_mask_func
    maps: Literal["file", "espirit"] = "file"
    batch_size: int = field(default=1, metadata=_min(1))
    num_workers: int = field(default=0, metadata=_min(0))
    train_split: str = "train"
    val_split: str = "val"
    max_val_items: int | None = field(default=None, metadata=_min(1))
    slab: int | None = field(default=None, metadata=_min(1))  # 3D: train on readout slabs
    slab_overlap: int = field(default=0, metadata=_min(0))  # 3D slab inference overlap


@dataclass
class ModelConfig:
    """The unrolled network: iteration count, regulariser, data consistency (``dc``)."""

    name: Literal["pgd", "modl", "varnet"] = "pgd"
    unrolls: int = field(default=8, metadata=_min(1))
    regularizer: Literal["resnet", "unet"] = "resnet"
    features: int = field(default=64, metadata=_min(1))
    blocks: int = field(default=5, metadata=_min(1))
    levels: int = field(default=3, metadata=_min(1))
    shared_weights: bool = False
    invertible: bool = False
    dc: dict[str, Any] = field(default_factory=dict)  # e.g. step_init, lam_init, cg_iters
    sens_features: int = field(default=8, metadata=_min(1))  # varnet sensitivity network
    sens_levels: int = field(default=3, metadata=_min(1))
    sens_chunk: int | None = field(default=None, metadata=_min(1))  # coils per checkpointed chunk
    dims: Literal["auto", "2d", "3d", "2d+t"] = "auto"


@dataclass
class StrategyConfig:
    """How the network is trained; ``modules``/``mode``/``steps_per_module`` are for greedy.

    ``modules=None`` means one module per iteration; ``steps_per_module=None`` (sequential mode)
    leaves the split of ``train.steps`` over the modules to the training loop; ``module_loss=None``
    means the train loss.
    """

    name: Literal["e2e", "checkpoint", "invertible", "greedy", "pipeline"] = "e2e"
    modules: int | None = field(default=None, metadata=_min(1))
    staleness: int = field(default=1, metadata=_min(0))  # pipeline: batches in flight - 1
    replicas: int = field(default=1, metadata=_min(1))  # pipeline: data-parallel copies per stage
    timeout: float = field(default=60.0, metadata=_min(0, strict=True))  # pipeline peer wait (s)
    mode: Literal["simultaneous", "sequential"] = "simultaneous"
    steps_per_module: int | None = field(default=None, metadata=_min(1))
    checkpoint_every: int = field(default=1, metadata=_min(1))
    module_loss: LossName | None = None


@dataclass
class OptimConfig:
    """Optimizer and scheduler, by ``torch.optim`` / ``torch.optim.lr_scheduler`` class name."""

    name: str = "Adam"
    lr: float = field(default=1e-3, metadata=_min(0, strict=True))
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. weight_decay
    scheduler: str | None = None
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_clip: float | None = field(default=None, metadata=_min(0, strict=True))
    amp: bool = False  # bf16 autocast


@dataclass
class TrainConfig:
    """The loop: length, logging/validation/checkpoint periods (0 disables), loss, device."""

    steps: int = field(default=1000, metadata=_min(1))
    val_every: int = field(default=200, metadata=_min(0))
    ckpt_every: int = field(default=500, metadata=_min(0))
    log_every: int = field(default=20, metadata=_min(0))
    seed: int = 0
    loss: LossName = "l1"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs/default"
    tensorboard: bool = True
    image_every: int = field(default=500, metadata=_min(0))


@dataclass
class Config:
    """A whole run."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(ValueError):
    """A config file, dict or override is invalid. ``key`` is the dotted key (if any)."""

    def __init__(self, problem: str, key: str | None = None, source: str | None = None) -> None:
        self.problem = problem
        self.key = key
        self.source = source
        parts = [p for p in (source, key) if p]
        super().__init__(": ".join([*parts, problem]))


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config file does not exist (also a :class:`FileNotFoundError`)."""


# ---------------------------------------------------------------------------- public functions


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None``: defaults only), apply ``key.sub=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    source = None
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
    return _from_raw(raw, overrides, source)


def config_from_dict(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> Config:
    """Build and validate a :class:`Config` from a nested dict (e.g. one stored in a checkpoint)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping, got {_show(data)}")
    return _from_raw(copy.deepcopy(dict(data)), overrides, None)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as nested plain dicts, lists and scalars (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the config as YAML (parent folders are created); ``load_config`` reads it back."""
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
            f"the top level must be a mapping of sections, got {_show(data)}", source=str(path)
        )
    return data


def _from_raw(raw: dict[str, Any], overrides: Sequence[str], source: str | None) -> Config:
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a sequence of strings, got the string {overrides!r}")
    raw = _with_defaults(raw)
    applied: dict[str, str] = {}
    for text in overrides:
        keys, value = _parse_override(text)
        _apply_override(raw, keys, value, text)
        applied[".".join(keys)] = text
    try:
        cfg = _build(Config, raw, "")
        _check_semantics(cfg)
    except ConfigError as exc:
        origin = _origin(exc.key, applied) or source
        raise ConfigError(exc.problem, exc.key, origin) from None
    return cfg


def _origin(key: str | None, applied: dict[str, str]) -> str | None:
    """The override that set ``key`` (or a part of it), as ``override 'a.b=c'``."""
    if key is None:
        return None
    for dotted, text in reversed(applied.items()):
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return f"override {text!r}"
    return None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if not isinstance(text, str):
        raise ConfigError(f"an override must be a string 'key.sub=value', got {_show(text)}")
    if "=" not in text:
        raise ConfigError(f"override {text!r} has no '='; expected 'key.sub=value'")
    dotted, value_text = text.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {text!r}: bad key {dotted!r}; expected e.g. 'model.unrolls'")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from exc
    return keys, value


def _with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults as nested dicts, with the file's keys replacing them section by section."""
    full = config_to_dict(Config())
    for key, value in raw.items():
        if isinstance(full.get(key), dict) and isinstance(value, dict):
            full[key].update(value)
        elif not (value is None and isinstance(full.get(key), dict)):  # an empty section: defaults
            full[key] = value
    return full


def _apply_override(raw: dict[str, Any], keys: list[str], value: Any, text: str) -> None:
    """Set ``raw[k0][k1]... = value``; unknown keys are reported later by ``_build``."""
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            dotted = ".".join(keys[: i + 1])
            problem = f"is {_show(child)}, not a mapping: cannot set {'.'.join(keys)!r}"
            raise ConfigError(problem, dotted, f"override {text!r}")
        node = child
    node[keys[-1]] = value


# ---------------------------------------------------------------------------- validation


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from the mapping ``raw``, converting every field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of {cls.__name__} keys, got {_show(raw)}", prefix)
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(_unknown(key, names), _join(prefix, key))
    hints = get_type_hints(cls)
    kwargs = {}
    for f in (f for f in fields(cls) if f.name in raw):
        key = _join(prefix, f.name)
        kwargs[f.name] = _convert(raw[f.name], hints[f.name], key)
        _check_bounds(kwargs[f.name], f, key)
    return cls(**kwargs)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; returns it (ints widened for float fields)."""
    origin = get_origin(tp)
    if is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in get_args(tp):
            return None
        for option in (o for o in get_args(tp) if o is not type(None)):
            with contextlib.suppress(ConfigError):
                return _convert(value, option, key)
    elif origin is Literal:
        if isinstance(value, str) and value in get_args(tp):
            return value
    elif origin is dict or tp is dict:  # free-form: string keys, any values
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return copy.deepcopy(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                return float(value)
    elif tp in (bool, int, str):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    else:
        raise TypeError(f"config field {key}: unsupported annotation {tp!r}")  # a bug here
    literals = [c for o in (tp, *get_args(tp)) if get_origin(o) is Literal for c in get_args(o)]
    hint = _suggest(value, literals) if isinstance(value, str) else ""
    raise ConfigError(f"expected {_describe(tp)}, got {_show(value)}{hint}", key)


def _check_bounds(value: Any, f: dataclasses.Field, key: str) -> None:
    if "min" not in f.metadata or value is None:
        return
    bound, strict = f.metadata["min"], f.metadata["strict"]
    if value < bound or (strict and value == bound):
        relation = ">" if strict else ">="
        raise ConfigError(f"must be {relation} {bound}, got {value!r}", key)


def _check_semantics(cfg: Config) -> None:
    """Checks that need more than a field's type: names resolvable in torch, mask, module count."""
    import torch  # deferred: reading a config should not need torch until it is validated

    optimizers = _classes(torch.optim, torch.optim.Optimizer)
    if cfg.optim.name not in optimizers:
        problem = f"unknown optimizer {cfg.optim.name!r}{_suggest(cfg.optim.name, optimizers)}"
        raise ConfigError(f"{problem}; expected a torch.optim class: {optimizers}", "optim.name")
    if cfg.optim.scheduler is not None:
        schedulers = _classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
        name = cfg.optim.scheduler
        if name not in schedulers:
            problem = f"unknown scheduler {name!r}{_suggest(name, schedulers)}"
            raise ConfigError(f"{problem}; expected one of {schedulers} or null", "optim.scheduler")
    from gleam_mri.physics.masks import build_mask_func

    try:
        build_mask_func(copy.deepcopy(cfg.data.mask))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid mask spec {cfg.data.mask!r}: {exc}", "data.mask") from None
    modules = cfg.strategy.modules
    if modules is not None and modules > cfg.model.unrolls:
        raise ConfigError(
            f"{modules} modules cannot be cut from model.unrolls={cfg.model.unrolls} iterations",
            "strategy.modules",
        )


def _classes(module: types.ModuleType, base: type) -> list[str]:
    """Public subclasses of ``base`` in ``module`` (ReduceLROnPlateau counts as a scheduler)."""
    names = {n for n, o in vars(module).items() if isinstance(o, type) and issubclass(o, base)}
    if base.__name__ == "LRScheduler" and "ReduceLROnPlateau" in vars(module):
        names.add("ReduceLROnPlateau")  # not an LRScheduler subclass in older torch
    return sorted(n for n in names if not n.startswith("_") and n != base.__name__)


# ---------------------------------------------------------------------------- messages


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _unknown(key: Any, names: Sequence[str]) -> str:
    hint = _suggest(key, names) if isinstance(key, str) else ""
    return f"unknown key {key!r}{hint}; valid keys: {', '.join(names)}"


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        options = [_describe(a) for a in get_args(tp) if a is not type(None)]
        text = " or ".join(options)
        return f"{text} or null" if type(None) in get_args(tp) else text
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(tp))
    if origin is dict or tp is dict:
        return "a mapping with string keys"
    if is_dataclass(tp):
        return "a mapping"
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, repr(tp))


def _show(value: Any) -> str:
    text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return "null" if value is None else f"{type(value).__name__} {text}"
