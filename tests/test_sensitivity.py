"""VarNet's sensitivity model: chunked, checkpointed coil U-Nets equal the plain model and keep
fewer tensors for backward."""

from __future__ import annotations

import pytest
import torch

from gleam_mri.meters import SavedTensorMeter
from gleam_mri.models.unrolled import Problem
from gleam_mri.models.varnet import SensitivityModel
from gleam_mri.physics.coils import birdcage_maps

H, W, C = 24, 16, 6


def problem(dtype: torch.dtype = torch.complex128) -> Problem:
    g = torch.Generator().manual_seed(0)
    maps = birdcage_maps(C, (H, W))[None].to(dtype)
    mask = torch.zeros(1, 1, 1, W)
    mask[..., ::3] = 1
    mask[..., W // 2 - 3 : W // 2 + 3] = 1
    y = mask * torch.randn(1, C, H, W, dtype=dtype, generator=g)
    return Problem.build(maps, mask.to(dtype.to_real()), y, 2)


def maps_and_grads(chunk: int | None, dtype=torch.float64) -> tuple[torch.Tensor, list, int]:
    torch.manual_seed(0)
    model = SensitivityModel("2d", features=4, levels=2, chunk=chunk).to(dtype)
    with SavedTensorMeter() as meter:
        maps = model(problem()).maps
        (maps.real**2 * torch.linspace(0, 1, W, dtype=dtype)).sum().backward()
    return maps.detach(), [p.grad for p in model.parameters()], meter.peak_bytes


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("chunk", [1, 4])
def test_chunked_sensitivity_model_equals_plain_and_saves_less(chunk):
    plain_maps, plain_grads, plain_bytes = maps_and_grads(None)
    maps, grads, saved = maps_and_grads(chunk)
    torch.testing.assert_close(maps, plain_maps, rtol=1e-12, atol=1e-12)
    for g, ref in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
    # kept for backward: the chunks' inputs, not the U-Net's activations (these are recomputed
    # one chunk at a time during backward, where saved_tensors_hooks cannot see them)
    assert saved < 0.5 * plain_bytes


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        SensitivityModel("2d", chunk=0)
