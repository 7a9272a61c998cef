"""Time and memory of a step callable, on CPU (wall time, saved activations) or CUDA (events, peak).

- Time: ``warmup`` untimed calls, then ``repeats`` timed calls; the median is reported. On CUDA
  each call is timed with a pair of CUDA events (the device time between them, synchronised
  after the call); on the CPU with ``time.perf_counter``.
- Memory on CUDA: ``torch.cuda.reset_peak_memory_stats`` after the warm-up, then
  ``max_memory_allocated`` over the timed calls (absolute: parameters, optimizer state and batch
  included) and the same minus what was allocated before the first timed call (the step's own).
- Memory on any device: the peak bytes of tensors saved for backward alive at once
  (:class:`~gleam_mri.meters.saved_tensors.SavedTensorMeter`) during one instrumented call, which
  also counts the convolution calls (:class:`~gleam_mri.bench.flops.ConvFlopCounter`).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gleam_mri.bench.flops import ConvFlopCounter
from gleam_mri.meters import SavedTensorMeter


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``"cpu"``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached CUDA blocks (between measurements)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA OOM, or ``MemoryError`` on the CPU)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def time_calls(
    fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int
) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` then ``repeats`` times; times (seconds) and, on CUDA, peak memory.

    Returns ``time_s`` (median), ``times_s``, ``warmup_s`` (wall time of the warm-up calls,
    compilation included) and, on CUDA, ``peak_bytes``, ``start_bytes`` and ``peak_step_bytes``
    (``None`` on the CPU).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    cuda = device.type == "cuda"
    synchronize(device)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    start_bytes = peak_bytes = None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        start_bytes = int(torch.cuda.memory_allocated(device))
    times = []
    for _ in range(repeats):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    if cuda:
        synchronize(device)
        peak_bytes = int(torch.cuda.max_memory_allocated(device))
    return {
        "time_s": statistics.median(times),
        "times_s": times,
        "warmup_s": warmup_s,
        "peak_bytes": peak_bytes,
        "start_bytes": start_bytes,
        "peak_step_bytes": None if peak_bytes is None else peak_bytes - start_bytes,
    }


def count_forward(forward: Callable[[], Any], modules: Sequence[nn.Module]) -> ConvFlopCounter:
    """Convolution calls of one ``forward()`` without gradients."""
    with torch.no_grad(), ConvFlopCounter(*modules) as counter:
        forward()
    return counter


def instrumented_call(step: Callable[[], Any], modules: Sequence[nn.Module]) -> dict[str, int]:
    """One ``step()`` with the FLOP counter and the saved-tensor meter on.

    Returns ``executed_forward_conv_flops`` (every convolution forward run, recomputation
    included), ``conv_calls`` and ``saved_bytes`` (peak bytes saved for backward alive at once).
    """
    with ConvFlopCounter(*modules) as counter, SavedTensorMeter() as meter:
        step()
    return {
        "executed_forward_conv_flops": counter.forward_flops,
        "conv_calls": counter.n_calls,
        "saved_bytes": meter.peak_bytes,
    }
