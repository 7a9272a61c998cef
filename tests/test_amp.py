"""bf16 autocast keeps the numbers: the same batch through the same weights in float32 and bf16.

Stated tolerance: bfloat16 keeps 8 significant bits (unit roundoff 2**-8 = 0.39%); the
regularisers' convolutions run in bf16 with float32 accumulation, while FFTs, data consistency
and losses stay in float32. Each unrolled iteration adds an independent rounding of the CNN
residual, so we require a relative L2 difference of the reconstruction below
``sqrt(depth) * 2 * 2**-8`` (1.6% at 4 iterations; measured 0.3%), the same bound on each
module's loss, and the same gradient direction (cosine > 0.99) for every parameter tensor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gleam_mri.config import ModelConfig
from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.models.builders import build_model
from gleam_mri.models.unrolled import Problem
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy

DEPTH = 4
TOLERANCE = math.sqrt(DEPTH) * 2 * 2.0**-8


def phantom_batch(size: int = 64, coils: int = 4) -> MRIBatch:
    image = torch.as_tensor(
        phantom_2d((size, size), np.random.default_rng(0)), dtype=torch.complex64
    )[None]
    maps = birdcage_maps(coils, (size, size))[None]
    mask = torch.zeros(1, 1, 1, size)
    mask[..., ::3] = 1
    mask[..., size // 2 - 4 : size // 2 + 4] = 1
    kspace = mask * fftnc(maps * image[:, None], 2)
    scale = image.abs().amax().reshape(1)
    return MRIBatch(kspace / scale, mask, maps, image.abs() / scale, scale.float(), 2)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


@pytest.mark.usefixtures("one_thread")
def test_bf16_reconstruction_and_greedy_losses_match_float32():
    batch = phantom_batch()
    torch.manual_seed(0)
    cfg = ModelConfig(name="pgd", unrolls=DEPTH, features=16, blocks=2)
    net = build_model(cfg, "2d")
    for p in net.parameters():  # move away from the near-identity init so the CNNs matter
        p.data.add_(0.05 * torch.randn_like(p))
    problem = Problem.from_batch(batch)
    with torch.no_grad():
        ref = net(problem)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(problem)
    assert low.dtype == ref.dtype == torch.complex64
    assert 0 < relative(low, ref) < TOLERANCE

    results = {}
    for amp in (False, True):
        strategy = build_strategy("greedy", net, build_loss("l1"), amp=amp, lr=0.0)
        stats = strategy.train_step(batch)
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        results[amp] = (stats, grads)
        net.zero_grad(set_to_none=True)
    (fp32, g32), (bf16, g16) = results[False], results[True]
    for key in (k for k in fp32 if k.startswith("loss")):
        assert abs(bf16[key] - fp32[key]) <= TOLERANCE * abs(fp32[key]), key
    assert g32.keys() == g16.keys() and g32
    for name, g in g32.items():
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), g16[name].flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))
