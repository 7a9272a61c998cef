"""The ``strategy`` section of a run config: a strategy's name and the strategies' options.

The options belong to the strategies (each declares an ``Options`` dataclass beside its code, in
the training stack above the config), so the section is read with the table of strategies the
caller passes (:func:`read_strategy`): this module and :mod:`gleam_mri.config` never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gleam_mri.schema import ConfigError, convert_field, join, plain, show, suggest, unknown

__all__ = ["StrategyConfig", "options_from", "read_strategy"]


@dataclass
class StrategyConfig:
    """How the network is trained: ``name`` (a key of the strategies' table) and the strategies'
    options.

    In YAML the options sit beside the name (``strategy: {name: greedy, modules: 4}``). Each key
    is an option of one or more strategies (their ``Options`` dataclass, declared next to their
    code) and is type-checked by it; keys the chosen strategy does not take are kept but unused
    (``strategy.name=e2e`` on a greedy config ignores ``modules``), and the chosen strategy's
    options not given take its defaults. The section is read with the table of strategies that
    the caller passes (:func:`read_strategy`); this module never imports the training stack.
    :func:`options_from` makes a strategy's ``Options`` object of it.
    """

    name: str = "e2e"
    options: dict[str, Any] = field(default_factory=dict)

    def to_raw(self) -> dict[str, Any]:
        """The YAML / checkpoint form: ``{"name": ..., **options}``."""
        return {"name": self.name, **plain(self.options)}


def read_strategy(raw: Any, prefix: str, strategies: Mapping[str, Any]) -> StrategyConfig:
    """The ``strategy`` section ``{"name": ..., option: value, ...}`` checked against the
    ``Options`` of ``strategies`` (see :class:`StrategyConfig`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of strategy keys, got {show(raw)}", prefix)
    name = raw.get("name", StrategyConfig.name)
    if not isinstance(name, str) or name not in strategies:
        hint = suggest(name, list(strategies)) if isinstance(name, str) else ""
        problem = f"unknown strategy {show(name)}{hint}; expected one of {list(strategies)}"
        raise ConfigError(problem, join(prefix, "name"))
    owners = _option_owners(strategies)
    options = {}
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in owners:
            raise ConfigError(unknown(key, ["name", *owners]), join(prefix, key))
        options[key] = convert_field(owners[key], key, value, prefix)
    defaults = plain(strategies[name].Options())  # the chosen strategy's, for keys not given
    return StrategyConfig(name, {**defaults, **options})


def options_from(cls: type, values: Mapping[str, Any]) -> Any:
    """The options dataclass ``cls`` from the entries of ``values`` that are its fields (its
    defaults for the others), e.g. a strategy's ``Options`` from ``cfg.strategy.options``."""
    return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def _option_owners(strategies: Mapping[str, Any]) -> dict[str, type]:
    """Option key -> an ``Options`` class declaring it (keys shared by strategies mean the same)."""
    owners: dict[str, type] = {}
    for name in strategies:
        for f in fields(strategies[name].Options):
            owners.setdefault(f.name, strategies[name].Options)
    return owners
