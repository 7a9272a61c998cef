"""Conjugate gradient and CG-SENSE against direct solutions."""

from __future__ import annotations

import pytest
import torch

from gleam_mri.linalg import conjugate_gradient
from gleam_mri.physics.coils import birdcage_maps
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense, zero_filled


def test_cg_solves_hermitian_system_per_batch_item():
    g = torch.Generator().manual_seed(0)
    n = 12
    mats = []
    for _ in range(3):
        a = torch.randn(n, n, dtype=torch.complex128, generator=g)
        mats.append(a.conj().T @ a + 0.5 * torch.eye(n, dtype=torch.complex128))
    mats = torch.stack(mats)  # (B, n, n), Hermitian positive definite
    rhs = torch.randn(3, n, dtype=torch.complex128, generator=g)
    x = conjugate_gradient(lambda v: (mats @ v.unsqueeze(-1)).squeeze(-1), rhs, max_iter=200)
    torch.testing.assert_close(x, torch.linalg.solve(mats, rhs), rtol=1e-8, atol=1e-8)


def test_cg_stops_at_tolerance_and_keeps_converged_items():
    rhs = torch.tensor([[1.0 + 0j, 2.0], [0.0, 0.0]], dtype=torch.complex128)
    x = conjugate_gradient(lambda v: 2 * v, rhs, max_iter=5, tol=1e-12)
    torch.testing.assert_close(x, rhs / 2)  # the zero item stays zero, no NaN


def test_cg_sense_matches_direct_tikhonov_solution():
    h, w = 10, 8
    maps = birdcage_maps(4, (h, w), dtype=torch.complex128)[None]
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::2] = 1
    mask[..., 3:5] = 1
    op = SenseOp(maps, mask, 2)
    g = torch.Generator().manual_seed(1)
    y = op.forward(torch.randn(1, h, w, dtype=torch.complex128, generator=g))
    lam = 0.05
    # dense normal matrix, column by column
    eye = torch.eye(h * w, dtype=torch.complex128).reshape(h * w, h, w)
    normal = torch.stack([op.gram(e[None])[0].flatten() for e in eye], dim=1)
    normal = normal + lam * torch.eye(h * w, dtype=torch.complex128)
    direct = torch.linalg.solve(normal, op.adjoint(y)[0].flatten()).reshape(1, h, w)
    x = cg_sense(op, y, lam=lam, max_iter=300, tol=1e-12)
    torch.testing.assert_close(x, direct, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(zero_filled(op, y), op.adjoint(y))
    with pytest.raises(ValueError, match="Tikhonov"):
        cg_sense(op, y, lam=-1.0)
