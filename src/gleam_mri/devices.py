"""Device choice and mixed precision, in one place."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

__all__ = ["bf16_autocast", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``ValueError`` for CUDA without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def bf16_autocast(device: torch.device | str, enabled: bool = True) -> AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device``'s type (a no-op when not ``enabled``)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)
