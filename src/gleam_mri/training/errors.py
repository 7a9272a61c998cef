"""Why training stops: errors raised by strategies and the run driver."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """A loss (or gradient norm) was NaN or infinite; raised before any optimizer step of that
    batch."""


class TrainingStopped(RuntimeError):
    """Training stopped early (non-finite loss, dead peer); the checkpoints written are kept."""
