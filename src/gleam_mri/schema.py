"""Typed dataclasses from plain mappings: conversion, bounds and messages that name the key.

Used by :mod:`gleam_mri.config` for the run configuration and by each training strategy for its
own small options class (``Strategy.Options``). A field's annotation says what it accepts
(``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, free-form ``dict``, a nested
dataclass) and ``field(metadata=at_least(...))`` bounds it. Every error is a :class:`ConfigError`
naming the dotted key, the bad value and what was expected.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = [
    "ConfigError",
    "at_least",
    "build",
    "convert_field",
    "describe",
    "plain",
    "show",
    "suggest",
]


class ConfigError(ValueError):
    """A config file, dict or override is invalid. ``key`` is the dotted key (if any)."""

    def __init__(self, problem: str, key: str | None = None, source: str | None = None) -> None:
        self.problem = problem
        self.key = key
        self.source = source
        parts = [p for p in (source, key) if p]
        super().__init__(": ".join([*parts, problem]))


def at_least(bound: float, *, strict: bool = False) -> dict[str, Any]:
    """Field metadata: the value (when not None) must be >= bound (> bound when strict)."""
    return {"min": bound, "strict": strict}


def build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from the mapping ``raw``, converting every field.

    Keys missing from ``raw`` take the dataclass defaults; unknown keys raise with a suggestion.
    A class may customise how it is read with a ``from_raw(raw, prefix)`` classmethod.
    """
    custom = getattr(cls, "from_raw", None)
    if custom is not None:
        return custom(raw, prefix)
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of {cls.__name__} keys, got {show(raw)}", prefix)
    names = [f.name for f in fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(unknown(key, names), join(prefix, key))
    values = {name: convert_field(cls, name, raw[name], prefix) for name in names if name in raw}
    return cls(**values)


def convert_field(cls: type, name: str, value: Any, prefix: str) -> Any:
    """``value`` checked against field ``name`` of dataclass ``cls`` (type and bounds)."""
    key = join(prefix, name)
    f = next(f for f in fields(cls) if f.name == name)
    converted = _convert(value, get_type_hints(cls)[name], key)
    _check_bounds(converted, f, key)
    return converted


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; returns it (ints widened for float fields)."""
    origin = get_origin(tp)
    if is_dataclass(tp):
        return build(tp, value, key)
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
    hint = suggest(value, literals) if isinstance(value, str) else ""
    raise ConfigError(f"expected {describe(tp)}, got {show(value)}{hint}", key)


def _check_bounds(value: Any, f: dataclasses.Field, key: str) -> None:
    if "min" not in f.metadata or value is None:
        return
    bound, strict = f.metadata["min"], f.metadata["strict"]
    if value < bound or (strict and value == bound):
        relation = ">" if strict else ">="
        raise ConfigError(f"must be {relation} {bound}, got {value!r}", key)


# ---------------------------------------------------------------------------- messages


def join(prefix: str, key: Any) -> str:
    """``prefix.key`` (``key`` alone at the top level)."""
    return f"{prefix}.{key}" if prefix else str(key)


def unknown(key: Any, names: Sequence[str]) -> str:
    """The message for an unknown key, with close matches and the valid keys."""
    hint = suggest(key, names) if isinstance(key, str) else ""
    return f"unknown key {key!r}{hint}; valid keys: {', '.join(names)}"


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for close matches of ``word`` among ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def describe(tp: Any) -> str:
    """What annotation ``tp`` accepts, in words."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        options = [describe(a) for a in get_args(tp) if a is not type(None)]
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


def show(value: Any) -> str:
    """A short description of a value for messages: its type and (cut) repr."""
    text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return "null" if value is None else f"{type(value).__name__} {text}"


def plain(obj: Any) -> Any:
    """A dataclass (or a mapping of them) as nested plain dicts (``to_raw()`` where defined)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        custom = getattr(obj, "to_raw", None)
        if custom is not None:
            return custom()
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return copy.deepcopy(obj)
