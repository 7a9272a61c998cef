"""A checkpoint written before the training stack moved (issue 23) still loads: its network
reconstructs what it reconstructed then, and its strategy state resumes into today's strategy.
The files come from ``tests/data/make_legacy_checkpoint.py``, run once at commit cd0afd5."""

from __future__ import annotations

from pathlib import Path

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.inference import load_run, reconstruct
from gleam_mri.training.strategies import strategy_from_config

DATA = Path(__file__).resolve().parent / "data"


def fixed_batch() -> MRIBatch:
    """The batch of ``make_legacy_checkpoint.fixed_batch_inputs`` (seeded, 4 coils, 16 x 12)."""
    g = torch.Generator().manual_seed(23)
    maps = torch.randn(1, 4, 16, 12, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(1, 1, 1, 12)
    mask[..., ::2] = 1.0
    kspace = torch.randn(1, 4, 16, 12, dtype=torch.complex64, generator=g) * mask
    return MRIBatch(kspace, mask, maps, None, torch.ones(1), 2)


def test_a_checkpoint_of_the_old_layout_reconstructs_as_it_did():
    run, ckpt = load_run(DATA / "legacy_checkpoint.pt", "cpu")
    assert (ckpt["step"], run.kind, run.cfg.strategy.name) == (3, "2d", "greedy")
    expected = torch.load(DATA / "legacy_checkpoint_expected.pt", weights_only=True)["image"]
    torch.testing.assert_close(reconstruct(run, fixed_batch()), expected, rtol=1e-5, atol=1e-6)


def test_its_strategy_state_resumes_into_todays_strategy():
    run, ckpt = load_run(DATA / "legacy_checkpoint.pt", "cpu")
    strategy = strategy_from_config(run.cfg, run.net)
    strategy.load_state_dict(ckpt["strategy"])
    assert strategy.step == 3 and strategy.module_steps == [3, 3]
    assert len(strategy.optimizers) == 2
