"""Tensors saved for backward: :class:`SavedTensorMeter`.

It measures activation memory on the CPU, where PyTorch keeps no allocator
statistics: every tensor an operation saves for backward passes through a pack hook
(:class:`torch.autograd.graph.saved_tensors_hooks`); the meter counts the bytes of its storage
while the autograd graph holds it, each storage once however many ops save it (or views of it).
Parameters and other leaf tensors requiring grad are not counted: they exist anyway.

What the hooks cannot see: ``torch.utils.checkpoint`` installs its own hooks inside a checkpointed
region, so the meter counts the inputs a checkpoint keeps (one state per segment) but neither the
activations it drops nor those it recomputes during backward (one segment at a time). Tensors kept
alive by Python references (the batch, the model's output held by the caller) are not counted.

:class:`~gleam_mri.meters.live_tensors.LiveTensorMeter` counts every tensor a region holds at its
peak, recomputed segments included; :func:`~gleam_mri.meters.cuda.cuda_peak_memory` reads the CUDA
allocator's own statistics.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch


class _Packed:
    """What the autograd graph stores instead of a saved tensor (a detached alias, no cycle)."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _storage_key(t: torch.Tensor) -> tuple[str, int, int]:
    storage = t.untyped_storage()
    return (str(t.device), storage.data_ptr(), storage.nbytes())


class SavedTensorMeter:
    """Context manager: live and peak bytes of tensors saved for backward.

    Attributes (bytes):
        current_bytes: saved storages alive now (released when the graph frees them).
        peak_bytes: the maximum of ``current_bytes`` since the meter was created.
        total_bytes: every storage that became alive, summed (a measure of traffic).

    Usage::

        with SavedTensorMeter() as meter:
            strategy.train_step(batch)
        print(meter.peak_bytes)
    """

    def __init__(self) -> None:
        self.current_bytes = 0
        self.peak_bytes = 0
        self.total_bytes = 0
        self._refs: dict[tuple[str, int, int], int] = {}
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None

    def __enter__(self) -> SavedTensorMeter:
        if self._hooks is not None:
            raise RuntimeError("SavedTensorMeter is already active")
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.__exit__(*exc)

    def reset_peak(self) -> None:
        """Restart the peak at the current live bytes."""
        self.peak_bytes = self.current_bytes

    def _pack(self, tensor: torch.Tensor) -> Any:
        if tensor.is_leaf and tensor.requires_grad:  # parameters and user leaves exist anyway
            return tensor.detach()
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            return tensor.detach()  # no plain storage to measure (sparse, meta): not counted
        packed = _Packed(tensor.detach())
        key = _storage_key(tensor)
        count = self._refs.get(key, 0)
        if count == 0:
            self.current_bytes += key[2]
            self.total_bytes += key[2]
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[key] = count + 1
        weakref.finalize(packed, self._release, key)
        return packed

    def _release(self, key: tuple[str, int, int]) -> None:
        count = self._refs[key] - 1
        if count == 0:
            del self._refs[key]
            self.current_bytes -= key[2]
        else:
            self._refs[key] = count

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Packed) else packed

    def __repr__(self) -> str:
        return (
            f"SavedTensorMeter(current={self.current_bytes}, peak={self.peak_bytes}, "
            f"total={self.total_bytes})"
        )
