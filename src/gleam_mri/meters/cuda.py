"""The CUDA allocator's own peak: :func:`cuda_peak_memory`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch


class CudaPeak(NamedTuple):
    """Result of :func:`cuda_peak_memory`: ``fn``'s return value and memory in bytes."""

    result: Any
    peak_bytes: int  # max_memory_allocated during fn (absolute: includes what was there before)
    start_bytes: int  # memory_allocated just before fn


def cuda_peak_memory(fn: Callable[[], Any], device: torch.device | str) -> CudaPeak:
    """Run ``fn()`` and report the peak CUDA memory allocated on ``device`` while it ran.

    ``peak_bytes - start_bytes`` is the extra memory ``fn`` needed at its peak. Raises
    ``ValueError`` for a non-CUDA device or when CUDA is unavailable.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"cuda_peak_memory needs a CUDA device, got {device}")
    if not torch.cuda.is_available():
        raise ValueError("cuda_peak_memory: CUDA is not available on this machine")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return CudaPeak(result, int(torch.cuda.max_memory_allocated(device)), int(start))
