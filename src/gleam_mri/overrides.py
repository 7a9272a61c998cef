"""Dotted overrides (``gleam train --set model.unrolls=16``): ``"a.b=value"`` parsed (the value
read as YAML), applied to nested dicts, and the override a bad key came from."""

from __future__ import annotations

from typing import Any

import yaml

from gleam_mri.schema import ConfigError, show

__all__ = ["apply_override", "override_origin", "parse_override"]


def override_origin(key: str | None, applied: dict[str, str]) -> str | None:
    """The override of ``applied`` (dotted key -> its text) that set ``key`` (or a part of it),
    as ``override 'a.b=c'``; ``None`` when none did."""
    if key is None:
        return None
    for dotted, text in reversed(applied.items()):
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return f"override {text!r}"
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` as ``(["a", "b"], value)``, the value read as YAML; :class:`ConfigError`
    for anything else."""
    if not isinstance(text, str):
        raise ConfigError(f"an override must be a string 'key.sub=value', got {show(text)}")
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


def apply_override(raw: dict[str, Any], keys: list[str], value: Any, text: str) -> None:
    """Set ``raw[k0][k1]... = value`` (missing mappings created); unknown keys are left for
    :func:`~gleam_mri.schema.build` to report."""
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            dotted = ".".join(keys[: i + 1])
            problem = f"is {show(child)}, not a mapping: cannot set {'.'.join(keys)!r}"
            raise ConfigError(problem, dotted, f"override {text!r}")
        node = child
    node[keys[-1]] = value
