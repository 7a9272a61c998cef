"""Cost model of the memory planner: real short steps on this device, fitted per strategy.

Model of the memory of one training step (bytes; ``D`` iterations, batch ``B``)::

    total = parameters(D) + gradients(D) + optimizer state(D) + batch tensors(B) + activations

``parameters``, ``gradients`` and ``optimizer state`` (Adam: two moments) are counted on the
device after real steps and fitted as ``c0 + c1 * D`` (``c1 = 0`` with shared weights); ``batch
tensors`` (k-space, mask, maps, target) are counted at ``B = 1, 2``. The activations are each
strategy's own law, declared beside it (``Strategy.costs``,
:mod:`gleam_mri.training.strategies.costs`), with ``f(B)`` the fixed part (prologue, read-out,
loss), ``a(B)`` one iteration, ``s(B)`` one checkpointed state and ``k`` iterations per
checkpoint::

    e2e          f(B) + D * a(B)                            (D >= 2; D = 1: one(B), measured)
    checkpoint   f_c(B) + ceil(D / k) * s(B) + recompute k * a(B)   (one segment, in backward)
    invertible   f_i(B) + D * g_i(B)                        (one coupling + states; g_i ~ 0)
    greedy(M)    e2e activations of its largest module, ceil(D / M) iterations

Every term is linear in ``B``. They are fitted exactly through real steps at ``B in {1, 2}`` and
``D in {1, 2, 3}`` (e2e), and at the depths a strategy asks for (``costs.calibration``: ``D in
{1, 2}`` for checkpoint with ``k = 1`` and for invertible). Three depths for e2e because a
one-iteration net is off the linear trend: the first iteration's input ``x0`` needs no gradient,
so tensors its data consistency would save (the coil maps and mask, saved once for all later
iterations) appear only from the second iteration on. ``a`` is the slope
between ``D = 2`` and ``3``; a one-iteration net or greedy module is its own measured case. What
counts as activation depends on the device:

- CUDA: ``torch.cuda.max_memory_allocated`` during a step (after a warm-up step, peak stats
  reset) minus the counted parameters, gradients, optimizer state and batch: every temporary the
  allocator saw, recomputation and workspaces included.
- CPU: PyTorch keeps no allocator peak statistics, so only tensors saved for backward are
  modelled (:class:`~gleam_mri.meters.SavedTensorMeter`, which also counts the batch
  tensors the graph saves, such as the coil maps). The meter cannot see the recomputation inside
  a checkpoint, so the ``recompute`` part is predicted from ``a(B)`` but not measured. A CPU
  prediction is a lower bound on the process's real memory (no temporaries that are not saved
  for backward, no allocator overhead).
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gleam_mri.config import Config, StrategyConfig
from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.meters import SavedTensorMeter, cuda_peak_memory
from gleam_mri.models.builders import build_model
from gleam_mri.physics.coils import rss
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import (
    STRATEGIES,
    build_strategy,
    optimizer_kwargs,
    strategy_settings,
)
from gleam_mri.training.strategies.costs import Costs


def planned_strategies() -> tuple[str, ...]:
    """The strategies the planner can plan: those of ``STRATEGIES`` that declare ``costs``."""
    return tuple(name for name, cls in STRATEGIES.items() if cls.costs is not None)


def strategy_costs(strategy: str) -> Costs:
    """The cost model part of ``strategy``; ``ValueError`` for one the planner cannot plan."""
    planned = planned_strategies()
    if strategy not in planned:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {planned}")
    return STRATEGIES[strategy].costs


def setting_names() -> tuple[str, ...]:
    """Every planner setting some strategy declares (``modules``, ``every``, ...)."""
    names = (n for s in planned_strategies() for n in STRATEGIES[s].costs.settings)
    return tuple(dict.fromkeys(names))


def config_settings(cfg: Config) -> dict[str, int | None]:
    """The config's value of every planner setting (``strategy.modules``, ...)."""
    out: dict[str, int | None] = {}
    for name in planned_strategies():
        costs = STRATEGIES[name].costs
        options = strategy_settings(cfg, name)
        for setting, option in costs.settings.items():
            out.setdefault(setting, getattr(options, option))
    return out


@dataclass(frozen=True)
class Breakdown:
    """Bytes of one training step, by part (predicted or measured).

    ``recompute``: activations a checkpoint recomputes during backward, predicted separately
    because the CPU meter cannot see them (a measured step has 0 here; on CUDA its
    ``activations`` include them).
    """

    parameters: int
    gradients: int
    optimizer: int
    batch: int
    activations: int
    recompute: int = 0

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))

    def largest(self) -> tuple[str, int]:
        """Name and bytes of the part that dominates."""
        parts = dataclasses.asdict(self)
        name = max(parts, key=parts.__getitem__)
        return name, parts[name]

    def to_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total": self.total}


@dataclass(frozen=True)
class Linear:
    """``c0 + c1 * x`` (bytes), fitted through the values at ``x = 1`` and ``x = 2``."""

    c0: float
    c1: float

    @classmethod
    def through(cls, y1: float, y2: float) -> Linear:
        return cls(2.0 * y1 - y2, y2 - y1)

    def __sub__(self, other: Linear) -> Linear:
        return Linear(self.c0 - other.c0, self.c1 - other.c1)

    def __call__(self, x: float) -> float:
        return self.c0 + self.c1 * x


@dataclass(frozen=True)
class MeasuredStep:
    """One real training step: its :class:`Breakdown` and the meters' raw readings (bytes).

    ``saved_bytes``: peak of :class:`SavedTensorMeter`; ``cuda_peak_bytes``: peak allocated
    above what was allocated before the model was built (CUDA only, else ``None``).
    """

    breakdown: Breakdown
    saved_bytes: int
    cuda_peak_bytes: int | None


# ---------------------------------------------------------------------------- problem and data


def check_problem(kind: str, shape: Sequence[int], coils: int) -> tuple[int, ...]:
    """``shape`` as a tuple after checking it fits ``kind`` (``ValueError`` naming the problem)."""
    dims = {"2d": 2, "3d": 3, "cine": 3}.get(kind)
    if dims is None:
        raise ValueError(f"unknown data kind {kind!r}; expected 2d, 3d or cine")
    shape = tuple(int(n) for n in shape)
    if len(shape) != dims or min(shape) < 1:
        names = {"2d": "HxW", "3d": "ZxHxW", "cine": "TxHxW"}[kind]
        raise ValueError(f"shape {shape} does not fit {kind} data: expected {names}, sizes >= 1")
    if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
        raise ValueError(f"the number of coils must be an integer >= 1, got {coils!r}")
    return shape


def calibration_batch(
    kind: str, shape: Sequence[int], coils: int, batch: int, device: torch.device | str
) -> MRIBatch:
    """A random complex64 :class:`MRIBatch` ``(B, C, *D)``: 4x lines and centre, unit-norm maps."""
    g = torch.Generator().manual_seed(0)
    shape = tuple(shape)
    fft_ndim = 3 if kind == "3d" else 2
    image = torch.randn(batch, *shape, dtype=torch.complex64, generator=g)
    maps = torch.randn(batch, coils, *shape, dtype=torch.complex64, generator=g)
    maps = maps / rss(maps, 1, keepdim=True)
    mask = torch.zeros(batch, 1, *shape[:-2], 1, shape[-1])
    mask[..., ::4] = 1.0
    mask[..., shape[-1] // 2 - 2 : shape[-1] // 2 + 2] = 1.0
    kspace = mask * fftnc(maps * image[:, None], fft_ndim)
    return MRIBatch(kspace, mask, maps, image.abs(), torch.ones(batch), fft_ndim).to(device)


# ---------------------------------------------------------------------------- measuring


def _nbytes(tensors: Any, device: torch.device) -> int:
    return sum(
        t.numel() * t.element_size()
        for t in tensors
        if isinstance(t, torch.Tensor) and t.device.type == device.type
    )


def planned_config(cfg: Config, strategy: str, setting: dict[str, int | None]) -> Config:
    """``cfg`` with ``strategy`` chosen and the planner ``setting`` (``modules``, ``every``, ...)
    written into its options (settings it does not use, and ``None`` values, leave the config's)."""
    options = {**cfg.strategy.options, **strategy_costs(strategy).options(setting)}
    return dataclasses.replace(cfg, strategy=StrategyConfig(strategy, options))


def measure_step(
    cfg: Config,
    kind: str,
    shape: Sequence[int],
    coils: int,
    device: torch.device | str,
    *,
    strategy: str,
    depth: int,
    batch: int,
    **setting: int | None,
) -> MeasuredStep:
    """Run one real training step of ``cfg``'s model at ``depth`` / ``batch`` and measure it.

    ``setting``: the strategy's planner settings (``modules=``, ``every=``; ``None`` or not
    given: the config's; settings of other strategies are ignored). The model is built with
    ``unrolls=depth`` as the strategy trains it (``Options.network``: the coupled network for the
    invertible strategy's coupling inversion, the ordinary one for MEL), the optimizer and loss
    from ``cfg``. On CUDA a warm-up step runs first (it creates the optimizer state); the
    activation part is the allocator's peak above everything counted.
    """
    strategy_costs(strategy)
    shape = check_problem(kind, shape, coils)
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
    chosen = planned_config(cfg, strategy, setting)
    options = strategy_settings(chosen)
    model_cfg = options.network(dataclasses.replace(cfg.model, unrolls=depth))
    torch.manual_seed(cfg.train.seed)
    net = build_model(model_cfg, kind).to(device)
    kwargs = {**optimizer_kwargs(cfg.optim), **options.strategy_kwargs(chosen)}
    step = build_strategy(strategy, net, build_loss(cfg.train.loss), **kwargs)
    data = calibration_batch(kind, shape, coils, batch, device)
    peak = None
    with SavedTensorMeter() as meter:
        if cuda:
            step.train_step(data)  # warm-up: optimizer state, workspaces
            step.zero_grad()
            meter.reset_peak()
            peak = cuda_peak_memory(lambda: step.train_step(data), device).peak_bytes - base
        else:
            step.train_step(data)
    params = list(net.parameters())
    states = [v for opt in step.optimizers for st in opt.state.values() for v in st.values()]
    parts = {
        "parameters": _nbytes(params, device),
        "gradients": _nbytes([p.grad for p in params], device),
        "optimizer": _nbytes(states, device),
        "batch": _nbytes([data.kspace, data.mask, data.maps, data.target, data.scale], device),
    }
    counted = sum(parts.values())
    activations = meter.peak_bytes if peak is None else peak - counted
    return MeasuredStep(Breakdown(**parts, activations=activations), meter.peak_bytes, peak)


@dataclass(frozen=True)
class CostModel:
    """Costs fitted on one device (see the module docstring); :meth:`predict` any setting.

    ``terms`` maps a name to a :class:`Linear`: ``params``, ``grads``, ``optimizer`` in depth;
    ``batch`` and the activation terms in batch size: ``one``, ``f``, ``a`` (end to end) and
    each strategy's own (its ``costs.line_terms``, e.g. ``f_c``, ``s`` for checkpointing).
    ``allocator``: whether activations came from the CUDA allocator's peak (else from the
    saved-tensor meter). ``settings``: the config's planner settings (``modules``, ``every``),
    the defaults of :meth:`predict`.
    """

    device: str
    kind: str
    shape: tuple[int, ...]
    coils: int
    settings: dict[str, int | None]
    shared_weights: bool
    allocator: bool
    terms: dict[str, Linear]

    def setting_of(self, strategy: str, depth: int, given: dict[str, int | None]) -> dict:
        """The settings of ``strategy`` at ``depth``: ``given``, else the config's (made possible
        at ``depth``, e.g. no more modules than iterations, when not given)."""
        costs = strategy_costs(strategy)
        mine = {k: self.settings.get(k) for k in costs.settings}
        mine = costs.clamp(depth, mine)
        mine.update({k: v for k, v in given.items() if k in costs.settings and v is not None})
        return mine

    def predict(self, strategy: str, depth: int, batch: int, **setting: int | None) -> Breakdown:
        """Predicted :class:`Breakdown` of a step of ``depth`` iterations at batch ``batch``.

        ``setting``: the strategy's planner settings, e.g. ``modules`` (greedy; default one per
        iteration) and ``every`` (iterations per checkpoint; default the config's); settings of
        other strategies are ignored. ``ValueError`` for impossible settings.
        """
        costs = strategy_costs(strategy)
        if depth < 1 or batch < 1:
            raise ValueError(f"depth and batch must be >= 1, got depth={depth}, batch={batch}")
        given = {k: v for k, v in setting.items() if k in costs.settings and v is not None}
        chosen = {**{k: self.settings.get(k) for k in costs.settings}, **given}
        costs.check(depth, chosen, self.shared_weights)
        act, recompute = costs.activations(self.terms, depth, batch, chosen)
        t = self.terms
        return Breakdown(
            parameters=round(t["params"](depth)),
            gradients=round(t["grads"](depth)),
            optimizer=round(t["optimizer"](depth)),
            batch=round(t["batch"](batch)),
            activations=max(round(act), 0),
            recompute=max(round(recompute), 0),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["terms"] = {k: {"c0": v.c0, "c1": v.c1} for k, v in self.terms.items()}
        return out


def measure_costs(
    cfg: Config,
    kind: str,
    shape: Sequence[int],
    coils: int,
    device: torch.device | str,
) -> CostModel:
    """Fit a :class:`CostModel` from short real steps (see the module docstring): end to end at
    depths 1, 2, 3, then each strategy's own ``costs.calibration`` depths, each at batches 1, 2.

    ``kind``, ``shape`` (``D``) and ``coils`` describe one item; on CUDA a throw-away step runs
    first so that workspaces the libraries keep after their first use do not count as a peak.
    """
    device = torch.device(device)
    shape = check_problem(kind, shape, coils)
    act: dict[tuple[str, int, int], float] = {}
    e2e: dict[tuple[int, int], Breakdown] = {}
    if device.type == "cuda":  # first use allocates lasting library workspaces: not in a peak
        measure_step(cfg, kind, shape, coils, device, strategy="e2e", depth=1, batch=1)
    calibrations = [("e2e", (1, 2, 3), {})]
    for name in planned_strategies():
        costs = STRATEGIES[name].costs
        if costs.calibration:
            calibrations.append((name, costs.calibration, costs.calibration_setting))
    for strategy, depths, setting in calibrations:
        for d in depths:
            for b in (1, 2):
                step = measure_step(
                    cfg, kind, shape, coils, device, strategy=strategy, depth=d, batch=b, **setting
                )
                act[strategy, d, b] = float(step.breakdown.activations)
                if strategy == "e2e":
                    e2e[d, b] = step.breakdown

    def line(strategy: str, d0: int) -> tuple[Linear, Linear]:
        """``(intercept(B), slope(B))`` through depths ``d0`` and ``d0 + 1``."""
        v = {(d, b): act[strategy, d, b] for d in (d0, d0 + 1) for b in (1, 2)}
        slopes = [v[d0 + 1, b] - v[d0, b] for b in (1, 2)]
        return (
            Linear.through(*[v[d0, b] - d0 * slopes[b - 1] for b in (1, 2)]),
            Linear.through(*slopes),
        )

    f, a = line("e2e", 2)
    allocator = device.type == "cuda"
    terms = {
        "params": Linear.through(e2e[1, 1].parameters, e2e[2, 1].parameters),
        "grads": Linear.through(e2e[1, 1].gradients, e2e[2, 1].gradients),
        "optimizer": Linear.through(e2e[1, 1].optimizer, e2e[2, 1].optimizer),
        "batch": Linear.through(e2e[1, 1].batch, e2e[1, 2].batch),
        "one": Linear.through(act["e2e", 1, 1], act["e2e", 1, 2]),
        "f": f,
        "a": a,
    }
    for strategy, depths, _ in calibrations[1:]:
        costs = STRATEGIES[strategy].costs
        terms.update(zip(costs.line_terms, line(strategy, depths[-2]), strict=True))
        costs.fitted(terms, allocator)
    return CostModel(
        device=str(device),
        kind=kind,
        shape=shape,
        coils=int(coils),
        settings=config_settings(cfg),
        shared_weights=cfg.model.shared_weights,
        allocator=allocator,
        terms=terms,
    )
