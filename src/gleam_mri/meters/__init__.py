"""Memory meters: what a training step (or any region) holds, measured, not modelled.

- :class:`SavedTensorMeter`: bytes of the tensors autograd saves for backward (any device).
- :class:`LiveTensorMeter`: bytes of every tensor alive in a region at its peak (any device;
  checkpoint recomputation included); :func:`storage_bytes` of what existed before.
- :func:`cuda_peak_memory`: the CUDA allocator's peak while a function runs.
"""

from __future__ import annotations

from gleam_mri.meters.cuda import CudaPeak, cuda_peak_memory
from gleam_mri.meters.live_tensors import LiveTensorMeter, storage_bytes
from gleam_mri.meters.saved_tensors import SavedTensorMeter

__all__ = ["CudaPeak", "LiveTensorMeter", "SavedTensorMeter", "cuda_peak_memory", "storage_bytes"]
