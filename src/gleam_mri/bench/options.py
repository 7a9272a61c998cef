"""Benchmark options, and the GPU performance options applied to a model without changing its code.

:class:`BenchOptions` says what to measure and how; every field is reported in the JSON. The
performance options:

- channels-last: the weights of every convolution are stored channels-last (``channels_last``
  for 2D, ``channels_last_3d`` for 3D kernels). cuDNN then picks its NHWC / NDHWC kernels when
  either the input or the weight is channels-last, and returns channels-last outputs, so the
  CNN code needs no change (on the CPU this holds for 2D convolutions; 3D ones stay contiguous).
- compile: ``module.compile()`` (``torch.compile`` in place) on each CNN.
- fused Adam: ``torch.optim.Adam(..., fused=True)``, on CUDA by default.
- amp: bf16 autocast (the strategies' ``amp`` option).
- cuDNN benchmark mode (``torch.backends.cudnn.benchmark``), on by default on CUDA.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from gleam_mri.config import (
    Config,
    ModelConfig,
    OptimConfig,
    StrategyConfig,
    TrainConfig,
    options_from,
    read_strategy,
)
from gleam_mri.loss_names import LOSS_NAMES
from gleam_mri.schema import plain
from gleam_mri.training.strategies import STRATEGIES, StrategyOptions


def single_process_strategies() -> tuple[str, ...]:
    """The strategies one process can measure (every one of ``STRATEGIES`` but the pipeline)."""
    return tuple(name for name, cls in STRATEGIES.items() if not cls.distributed)


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how (every field is reported in the JSON's ``options``).

    ``fused_adam=None`` means fused Adam on CUDA only; ``copy_bytes=None`` means 1 GiB on CUDA,
    64 MiB on the CPU; ``strategy_options``: options of the strategies, as in a config's
    ``strategy`` section (``{"modules": 4, "checkpoint_every": 2}``; each strategy takes those it
    has, the others keep their defaults: one greedy module per iteration, one iteration per
    checkpointed segment); ``cudnn_benchmark`` lets cuDNN time its algorithms once per shape (the
    shapes are fixed, and the first steps are never timed).
    """

    strategies: tuple[str, ...] = field(default_factory=single_process_strategies)
    depths: tuple[int, ...] = (4, 8, 16, 32)
    batch: int = 1
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_adam: bool | None = None
    repeats: int = 5
    warmup: int = 2
    device: str = "auto"
    fastmri: bool = False
    strategy_options: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-4
    loss: str = "l1"
    floors: bool = True
    copy_bytes: int | None = None
    cudnn_benchmark: bool = True

    def validate(self) -> None:
        """``ValueError`` naming the first bad field."""
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ValueError(
                f"unknown strategies {unknown or '(none given)'}; choose from {sorted(STRATEGIES)}"
            )
        if not self.depths or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.depths
        ):
            raise ValueError(f"depths must be integers >= 1, got {list(self.depths)}")
        for name in ("batch", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        for name in self.strategies:  # each strategy checks its options at the smallest depth
            strategy_config(name, self, ModelConfig(unrolls=min(self.depths)))
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {LOSS_NAMES}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.copy_bytes is not None and self.copy_bytes < 1:
            raise ValueError(f"copy_bytes must be positive, got {self.copy_bytes}")


def strategy_config(
    name: str, options: BenchOptions, model: ModelConfig
) -> tuple[Config, StrategyOptions]:
    """The run config of strategy ``name`` on ``model`` with the bench's strategy options, and
    the strategy's ``Options``, checked by the strategy (a :class:`~gleam_mri.schema.ConfigError`,
    which is a ``ValueError``, names the option)."""
    section = read_strategy({**options.strategy_options, "name": name}, "strategy", STRATEGIES)
    settings = options_from(STRATEGIES[name].Options, section.options)
    cfg = Config(
        model=settings.network(dataclasses.replace(model, invertible=False)),
        strategy=StrategyConfig(name, section.options),
        optim=OptimConfig(lr=options.lr),
        train=TrainConfig(loss=options.loss),
    )
    settings.check(cfg)
    return cfg, settings


def reported_options(settings: StrategyOptions) -> dict[str, Any]:
    """A strategy's options as a record reports them (plain values)."""
    return plain(settings)


def apply_channels_last(module: nn.Module) -> int:
    """Store the 4D/5D weights of every convolution in ``module`` channels-last, in place.

    Call before building optimizers. Returns the number of weights converted.
    """
    converted = 0
    for m in module.modules():
        if not isinstance(m, _ConvNd):
            continue
        w = m.weight
        fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(w.ndim)
        if fmt is not None:
            w.data = w.data.contiguous(memory_format=fmt)
            converted += 1
    return converted


def compile_modules(modules: Iterable[nn.Module], **kwargs: Any) -> int:
    """``torch.compile`` each module in place (``nn.Module.compile``); returns how many."""
    count = 0
    for module in modules:
        module.compile(**kwargs)
        count += 1
    return count


def resolve_fused_adam(fused: bool | None, device: torch.device) -> bool:
    """``None`` -> fused Adam on CUDA only; ``True`` on a CPU is allowed (PyTorch >= 2.4)."""
    return device.type == "cuda" if fused is None else bool(fused)


def adam_kwargs(fused: bool) -> dict[str, Any]:
    """Extra ``torch.optim.Adam`` arguments for the chosen options."""
    return {"fused": True} if fused else {}
