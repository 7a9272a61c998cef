"""Memory planner (``gleam plan``): what fits a memory budget for each training strategy, and why.

:func:`plan` measures the configured network's costs on the present device
(:func:`~gleam_mri.plan.costs.measure_costs`: short real steps at depths 1-3 and
batches 1-2, the model in :mod:`gleam_mri.plan.costs`), then chooses for each strategy

- ``depth``: the most iterations (``<= max_depth``) at the config's batch size;
- ``batch``: the largest batch (``<= max_batch``) at the config's depth;
- its knob, where the strategy declares one (``costs.knob``): greedy's ``modules`` (the fewest,
  i.e. largest, modules) and checkpointing's ``every`` (the longest segments) at the config's
  depth and batch,

and :meth:`Plan.explain` says in words what each choice costs, what dominates it, the headroom
left and what the next step up would need. Otherwise greedy and checkpoint use the config's
``strategy.modules`` (``None``: one module per iteration) and ``strategy.checkpoint_every``.
Which strategies are planned, and how, the strategies say (``Strategy.costs``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gleam_mri.config import Config
from gleam_mri.plan.costs import (
    Breakdown,
    CostModel,
    MeasuredStep,
    check_problem,
    config_settings,
    measure_costs,
    measure_step,
    planned_strategies,
    setting_names,
    strategy_costs,
)
from gleam_mri.units import format_size, parse_size

__all__ = [
    "Breakdown",
    "Choice",
    "CostModel",
    "MeasuredStep",
    "Plan",
    "best_fit",
    "measure_costs",
    "measure_step",
    "plan",
    "problem_from_config",
]


def problem_from_config(
    cfg: Config,
    kind: str | None = None,
    shape: Sequence[int] | None = None,
    coils: int | None = None,
) -> tuple[str, tuple[int, ...], int]:
    """``(kind, D, coils)``: explicit values, else the first file of the config's train split.

    With an explicit ``shape``, ``kind`` defaults to ``data.kind`` and ``coils`` is required.
    Without, the first ``.h5`` of ``data.root/data.train_split`` gives them (``coils`` may be
    overridden); with ``data.slab`` (3D) the readout ``H`` is the slab size. ``ValueError`` when
    neither is available or they disagree.
    """
    if shape is not None:
        kind = kind or cfg.data.kind
        if coils is None:
            raise ValueError("an explicit shape needs the number of coils as well")
        return kind, check_problem(kind, shape, coils), coils
    from gleam_mri.data.fastmri import inspect_fastmri

    folder = Path(cfg.data.root) / cfg.data.train_split
    files = sorted(folder.glob("*.h5")) if folder.is_dir() else []
    if not files:
        raise ValueError(f"no .h5 files in {folder}: give the problem shape and coils explicitly")
    info = inspect_fastmri(files[0])
    if kind is not None and kind != info.kind:
        raise ValueError(f"{files[0]}: holds {info.kind} data, but kind {kind!r} was asked for")
    dims = list(info.kspace_shape[2:])
    if cfg.data.slab is not None and info.kind == "3d":
        dims[-2] = min(cfg.data.slab, dims[-2])
    coils = int(info.kspace_shape[1]) if coils is None else coils
    return info.kind, check_problem(info.kind, dims, coils), coils


@dataclass(frozen=True)
class Choice:
    """The result of one search: ``strategy``'s best ``knob`` (``depth``, ``batch`` or the
    strategy's own knob, e.g. ``modules``).

    ``value`` is ``None`` when even the smallest setting does not fit; ``depth``, ``batch``,
    ``setting`` (the strategy's planner settings, e.g. ``{"modules": 2}``; also read as
    attributes: ``choice.modules``, ``None`` where the strategy has no such setting) and
    ``predicted`` describe the chosen setting (or that smallest one). ``next_total``: the
    predicted total one step beyond the choice (``None`` at the search ``limit``).
    """

    strategy: str
    knob: str
    value: int | None
    depth: int
    batch: int
    setting: dict[str, int | None]
    predicted: Breakdown
    next_total: int | None
    limit: int

    def __getattr__(self, name: str) -> int | None:
        if name != "setting" and name in setting_names():
            return self.setting.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["setting"]
        out.update({name: self.setting.get(name) for name in setting_names()})
        out["predicted"] = self.predicted.to_dict()
        return out


@dataclass
class Plan:
    """Choices for a budget (bytes) on the device the :class:`CostModel` was measured on."""

    budget: int
    costs: CostModel
    config: dict[str, Any]
    choices: list[Choice]
    notes: list[str] = field(default_factory=list)

    def choice(self, strategy: str, knob: str) -> Choice:
        """The :class:`Choice` of ``strategy`` for ``knob``; ``KeyError`` when it was not made."""
        for c in self.choices:
            if (c.strategy, c.knob) == (strategy, knob):
                return c
        raise KeyError(f"no {knob} choice for strategy {strategy!r} in this plan")

    def explain(self) -> str:
        """The plan in plain words, one line per choice."""
        c, t = self.config, self.costs.terms
        lines = [
            f"Memory plan on {self.costs.device} for a budget of {format_size(self.budget)}.",
            f"Model: {c['model']}; config: {c['depth']} iterations, batch {c['batch']}; "
            f"{self.costs.kind} data {'x'.join(map(str, self.costs.shape))} with "
            f"{self.costs.coils} coils.",
            f"Measured: one iteration's activations {format_size(t['a'](1))} at batch 1, "
            f"{format_size(t['a'].c1)} per extra item; parameters {format_size(t['params'].c1)}, "
            f"gradients {format_size(t['grads'].c1)} and optimizer state "
            f"{format_size(t['optimizer'].c1)} per iteration; batch tensors "
            f"{format_size(t['batch'].c1)} per item.",
            *self.notes,
        ]
        for strategy in dict.fromkeys(ch.strategy for ch in self.choices):
            lines.append(f"{strategy}:")
            mine = [ch for ch in self.choices if ch.strategy == strategy]
            lines += [f"  {_explain(ch, self.budget)}" for ch in mine]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "config": dict(self.config),
            "costs": self.costs.to_dict(),
            "choices": [c.to_dict() for c in self.choices],
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- search


_PARTS = {
    "parameters": "parameters",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "batch": "batch tensors",
    "activations": "activations",
    "recompute": "checkpoint recomputation",
}


def _setting(ch: Choice) -> str:
    """The setting of a choice apart from its own knob, e.g. ``at batch 2, 4 modules of <= 3``."""
    where = {"depth": f"at batch {ch.batch}", "batch": f"at depth {ch.depth}"}
    text = where.get(ch.knob, f"at depth {ch.depth}, batch {ch.batch}")
    return text + strategy_costs(ch.strategy).describe(ch.depth, ch.setting)


def _explain(ch: Choice, budget: int) -> str:
    p = ch.predicted
    name, part = p.largest()
    knob = strategy_costs(ch.strategy).knob
    fewest = knob is not None and ch.knob == knob.setting and knob.prefer == "fewest"
    if ch.value is None:
        smallest = ch.limit if fewest else 1
        return (
            f"{ch.knob}: nothing fits; even {ch.knob} {smallest} {_setting(ch)} needs "
            f"{format_size(p.total)} (largest part: {_PARTS[name]}, {format_size(part)})."
        )
    head = budget - p.total
    text = (
        f"{ch.knob} {ch.value} {_setting(ch)}: needs {format_size(p.total)}, headroom "
        f"{format_size(head)} ({100 * head / budget:.0f}% of the budget); largest part: "
        f"{_PARTS[name]} ({format_size(part)}, {100 * part / max(p.total, 1):.0f}%)."
    )
    if ch.next_total is None:
        if fewest:
            return text + f" {knob.at_one or ch.value} is the fewest possible."
        return text + f" Stopped at the search limit ({ch.knob} {ch.limit})."
    nxt = ch.value - 1 if fewest else ch.value + 1
    growth = ch.next_total - p.total
    return text + (
        f" {ch.knob.capitalize()} {nxt} would need {format_size(ch.next_total)} "
        f"({'+' if growth >= 0 else '-'}{format_size(abs(growth))})."
    )


def best_fit(
    total: Callable[[int], int], budget: int, limit: int, fewest: bool = False
) -> int | None:
    """The largest value in ``1 .. limit`` whose ``total(value)`` fits ``budget`` (``fewest``:
    the smallest); ``None`` when none fits."""
    fits = [v for v in range(1, limit + 1) if total(v) <= budget]
    if not fits:
        return None
    return fits[0] if fewest else fits[-1]


def _search(costs: CostModel, strategy: str, knob: str, cfg: Config, budget: int, limit: int):
    depth0, batch0 = cfg.model.unrolls, cfg.data.batch_size
    own = strategy_costs(strategy).knob
    fewest = own is not None and knob == own.setting and own.prefer == "fewest"

    def setting(v: int) -> tuple[int, int, dict[str, int | None]]:
        depth = v if knob == "depth" else depth0
        batch = v if knob == "batch" else batch0
        given = {knob: v} if knob not in ("depth", "batch") else {}
        return depth, batch, {**costs.setting_of(strategy, depth, {}), **given}

    def total(v: int) -> int:
        depth, batch, chosen = setting(v)
        return costs.predict(strategy, depth, batch, **chosen).total

    value = best_fit(total, budget, limit, fewest)
    if fewest:  # the fewest that fit: one fewer would not
        nxt = value - 1 if value is not None and value > 1 else None
    else:  # the most that fit: one more would not
        nxt = value + 1 if value is not None and value < limit else None
    shown = value if value is not None else (limit if fewest else 1)
    depth, batch, chosen = setting(shown)
    return Choice(
        strategy=strategy,
        knob=knob,
        value=value,
        depth=depth,
        batch=batch,
        setting=chosen,
        predicted=costs.predict(strategy, depth, batch, **chosen),
        next_total=None if nxt is None else total(nxt),
        limit=limit,
    )


def plan(
    cfg: Config,
    budget_bytes: int | str,
    *,
    kind: str | None = None,
    shape: Sequence[int] | None = None,
    coils: int | None = None,
    device: torch.device | str = "auto",
    strategies: Sequence[str] | None = None,
    max_depth: int = 64,
    max_batch: int = 256,
    costs: CostModel | None = None,
) -> Plan:
    """Choose per strategy the largest depth, the largest batch and its knob (greedy: the
    fewest modules; checkpoint: the longest segments) that fit ``budget_bytes`` (an int or text
    for :func:`parse_size`).

    ``strategies``: default every strategy that declares costs. The problem shape comes from
    ``kind``/``shape``/``coils`` or the config's data set (:func:`problem_from_config`); ``costs``
    skips the measurement (it must be of ``cfg``). ``ValueError`` for a bad budget, unknown
    strategy or limits below 1.
    """
    budget = parse_size(budget_bytes)
    planned = planned_strategies()
    if strategies is None:
        strategies = planned
    strategies = [strategies] if isinstance(strategies, str) else list(strategies)
    unknown = [s for s in strategies if s not in planned]
    if unknown or not strategies:
        problem = f"unknown strategies {unknown}" if unknown else "no strategies given"
        raise ValueError(f"{problem}; choose from {planned}")
    for name, limit in (("max_depth", max_depth), ("max_batch", max_batch)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {limit!r}")
    if costs is None:
        from gleam_mri.devices import resolve_device

        kind, shape, coils = problem_from_config(cfg, kind, shape, coils)
        costs = measure_costs(cfg, kind, shape, coils, resolve_device(str(device)))
    m = cfg.model
    config = {
        "model": f"{m.name} ({m.regularizer}, {m.features} features, {m.blocks} blocks)",
        "depth": m.unrolls,
        "batch": cfg.data.batch_size,
        **config_settings(cfg),
    }
    notes = []
    if not costs.allocator:
        notes.append(
            "Note: on the CPU only tensors saved for backward are measured (its allocator keeps "
            "no peak statistics): totals are lower bounds; checkpoint recomputation is modelled "
            "from one iteration's activations, not measured."
        )
    choices = []
    for strategy in strategies:
        own = strategy_costs(strategy)
        skipped = own.skipped(costs.shared_weights)
        if skipped:
            notes.append(f"{strategy}: skipped, {skipped}.")
            continue
        choices.append(_search(costs, strategy, "depth", cfg, budget, max_depth))
        choices.append(_search(costs, strategy, "batch", cfg, budget, max_batch))
        if own.knob is not None:
            choices.append(_search(costs, strategy, own.knob.setting, cfg, budget, m.unrolls))
    return Plan(budget=budget, costs=costs, config=config, choices=choices, notes=notes)
