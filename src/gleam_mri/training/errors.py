"""Why training stops: errors raised by strategies and the run driver."""

from __future__ import annotations

import math
import re
from typing import Any

from gleam_mri.units import format_size, parse_size


class NonFiniteLossError(RuntimeError):
    """A loss (or gradient norm) was NaN or infinite; raised before any optimizer step of that
    batch."""


class TrainingStopped(RuntimeError):
    """Training stopped early (non-finite loss, dead peer); the checkpoints written are kept."""


class OutOfMemoryStop(TrainingStopped):
    """A process ran out of GPU memory; the message names it and the ``gleam plan`` budget.

    ``needed``: the bytes it held plus the allocation that failed (a lower bound on what the
    current settings need), ``capacity``: the GPU's total memory (``None`` where unknown).
    """

    def __init__(self, message: str, needed: int | None, capacity: int | None) -> None:
        super().__init__(message)
        self.needed, self.capacity = needed, capacity


_TRIED = re.compile(r"Tried to allocate ([0-9.]+) ?([KMGT]i?B|B)", re.IGNORECASE)
_CAPACITY = re.compile(r"total capacity of ([0-9.]+) ?([KMGT]i?B|B)", re.IGNORECASE)


def out_of_memory_stop(
    error: BaseException, where: str, step: int, device: Any, held: int | None = None
) -> OutOfMemoryStop:
    """The :class:`OutOfMemoryStop` for a ``torch.cuda.OutOfMemoryError`` raised by ``where``
    (e.g. ``"pipeline stage 1 of 2 (rank 1, modules [2, 3])"``) at training step ``step``.

    ``held``: bytes allocated when it failed (default: ``torch.cuda.memory_allocated(device)``);
    the failed request and the capacity are read from torch's message.
    """
    text = str(error)
    if held is None:
        held = _cuda_allocated(device)
    tried = _TRIED.search(text)
    total = _CAPACITY.search(text)
    request = parse_size("".join(tried.groups())) if tried else None
    capacity = parse_size("".join(total.groups())) if total else _cuda_capacity(device)
    needed = (held or 0) + (request or 0) or None
    parts = [f"{where} ran out of GPU memory on {device} at training step {step}"]
    if needed:
        held_text = f"held {format_size(held or 0)}"
        more = f" and tried to allocate {format_size(request)} more" if request else ""
        parts.append(
            f"it {held_text}{more}, so these settings need at least {format_size(needed)}"
            + (f" on a GPU with {format_size(capacity)}" if capacity else "")
        )
    budget = capacity or needed
    advice = "Run `gleam plan CONFIG --budget <the GPU's memory>`"
    if budget:
        advice = f"Run `gleam plan CONFIG --budget {_budget_text(budget)}`"
    advice += " to choose the depth, batch size and greedy modules that fit"
    if needed and capacity:
        advice += f" (`--budget {_budget_text(needed)}` shows what the current settings would need)"
    parts.append(
        f"{advice}, or use more pipeline stages (strategy.name=pipeline, more processes). "
        f"The checkpoints written so far are kept. (torch: {text.splitlines()[0] if text else ''})"
    )
    return OutOfMemoryStop("; ".join(parts[:2]) + ". " + parts[-1], needed, capacity)


def _budget_text(size: int) -> str:
    """``size`` rounded up to 0.1 GiB (or 1 MiB), as ``gleam plan --budget`` reads it."""
    if size >= 2**30:
        return f"{math.ceil(size / 2**30 * 10) / 10:g}GiB"
    return f"{max(1, math.ceil(size / 2**20))}MiB"


def _cuda_allocated(device: Any) -> int | None:
    try:
        import torch

        if torch.cuda.is_available() and str(device).startswith("cuda"):
            return int(torch.cuda.memory_allocated(device))
    except Exception:  # the message must be built whatever the CUDA state
        return None
    return None


def _cuda_capacity(device: Any) -> int | None:
    try:
        import torch

        if torch.cuda.is_available() and str(device).startswith("cuda"):
            return int(torch.cuda.get_device_properties(device).total_memory)
    except Exception:
        return None
    return None
