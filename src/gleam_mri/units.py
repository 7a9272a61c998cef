"""Memory sizes in text: ``parse_size("24GiB")`` and ``format_size(n)`` (the planner, the
study, checkpoint and out-of-memory messages)."""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes of ``"24GiB"``, ``"512MiB"``, ``"1.5GB"``, ``"2e9"`` or ``"4096"`` (at least 1).

    ``KiB/MiB/GiB/TiB`` (and the short ``K/M/G/T``) are powers of 1024, ``kB/MB/GB/TB`` powers of
    1000; case and spaces are ignored; fractions of a byte are dropped. ``ValueError`` naming the
    text for anything else.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    elif isinstance(text, str):
        match = _SIZE.match(text)
        if match is None:
            raise ValueError(f"cannot read a memory size from {text!r}; write e.g. 24GiB or 2e9")
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(
                f"unknown unit {match.group(2)!r} in {text!r}; use B, KiB, MiB, GiB, TiB "
                "(powers of 1024) or kB, MB, GB, TB (powers of 1000)"
            )
    else:
        raise TypeError(f"a memory size must be a string or an int, got {type(text).__name__}")
    size = int(value * _UNITS[unit])
    if size < 1:
        raise ValueError(f"a memory size must be at least 1 byte, got {text!r}")
    return size


def format_size(n: float) -> str:
    """``"1.50 GiB"``-style text of a byte count."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"
