"""Readout slabs of 3D k-space: exact slab extraction, slab bounds, SlabDataset, slab-wise
inference (zero-filled exact, CG-SENSE close, a tiny PGD network), greedy training on slabs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from gleam_mri.config import ModelConfig
from gleam_mri.data.batch import MRIBatch, collate_batches
from gleam_mri.data.datasets import VolumeDataset
from gleam_mri.data.errors import DatasetError
from gleam_mri.data.fastmri import read_fastmri, write_fastmri
from gleam_mri.data.slabs import (
    SlabDataset,
    extract_slab,
    readout_slabs,
    reconstruct_volume_in_slabs,
)
from gleam_mri.fft import fftnc, ifftnc
from gleam_mri.models.builders import build_model
from gleam_mri.models.unrolled import Problem
from gleam_mri.physics.coils import birdcage_maps, rss
from gleam_mri.physics.masks import PoissonDiscMask
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy

C, Z, H, W = 3, 8, 24, 10


def volume(rng: np.random.Generator, dtype: torch.dtype = torch.complex128) -> dict:
    """Fully sampled k-space, maps ``(C, Z, H, W)`` and the RSS image ``(Z, H, W)`` of a phantom."""
    maps = birdcage_maps(C, (Z, H, W)).to(dtype)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in (Z, H, W)), indexing="ij")
    body = (xx**2 + yy**2 + 0.5 * zz**2 < 0.8) * (1.0 + 0.5 * xx)
    image = body * (1 + 0.1 * rng.standard_normal((Z, H, W))) * np.exp(0.4j * yy)
    kspace = fftnc(maps * torch.from_numpy(image).to(dtype), 3)
    return {"kspace": kspace, "maps": maps, "rss": rss(ifftnc(kspace, 3), dim=0)}


def poisson(seed: int = 0) -> PoissonDiscMask:
    return PoissonDiscMask(acceleration=2.0, calib=(4, 4), seed=seed)


@pytest.fixture
def files(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Two 3D files: ``a.h5`` with 2 volumes, ``b.h5`` with 1; both with maps and RSS targets."""
    paths = []
    for name, count in (("a.h5", 2), ("b.h5", 1)):
        vols = [volume(rng, torch.complex64) for _ in range(count)]
        paths.append(
            write_fastmri(
                tmp_path / name,
                torch.stack([v["kspace"] for v in vols]),
                reconstruction_rss=torch.stack([v["rss"] for v in vols]),
                maps=torch.stack([v["maps"] for v in vols]),
                kind="3d",
            )
        )
    return paths


def test_extract_slab_equals_rows_of_the_coil_images(rng: np.random.Generator) -> None:
    data = volume(rng)
    coil_images = ifftnc(data["kspace"], 3)
    for start, stop in ((0, 8), (5, 17), (13, 24), (7, 8)):
        slab = extract_slab(data["kspace"], start, stop)
        assert slab.shape == (C, Z, stop - start, W) and slab.dtype == torch.complex128
        rows = coil_images[:, :, start:stop]
        torch.testing.assert_close(ifftnc(slab, 3), rows, rtol=0, atol=1e-12)
    # masking over (Z, W) commutes with slab extraction
    mask = poisson()((C, Z, H, W))
    torch.testing.assert_close(
        extract_slab(data["kspace"] * mask, 4, 12), extract_slab(data["kspace"], 4, 12) * mask
    )


@pytest.mark.parametrize(
    ("height", "slab", "overlap", "expected"),
    [
        (24, 8, 0, [(0, 8), (8, 16), (16, 24)]),
        (24, 8, 2, [(0, 8), (6, 14), (12, 20), (16, 24)]),
        (24, 10, 3, [(0, 10), (7, 17), (14, 24)]),
        (24, 24, 5, [(0, 24)]),
        (7, 3, 2, [(0, 3), (1, 4), (2, 5), (3, 6), (4, 7)]),
    ],
)
def test_readout_slabs_cover_h_with_overlap(
    height: int, slab: int, overlap: int, expected: list[tuple[int, int]]
) -> None:
    bounds = readout_slabs(height, slab, overlap)
    assert bounds == expected
    covered = np.zeros(height, dtype=int)
    for start, stop in bounds:
        assert stop - start == slab
        covered[start:stop] += 1
    assert covered.min() >= 1
    for (_, stop), (start, _) in itertools.pairwise(bounds):
        assert stop - start >= overlap  # neighbours share at least `overlap` rows
    assert readout_slabs(torch.zeros(C, Z, height, W), slab, overlap) == expected


def test_bad_slab_arguments_raise() -> None:
    kspace = torch.zeros(C, Z, H, W, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"slab \(25 rows\) is larger than the readout size H = 2"):
        readout_slabs(kspace, 25)
    with pytest.raises(ValueError, match="overlap must satisfy 0 <= overlap < slab = 8"):
        readout_slabs(kspace, 8, 8)
    with pytest.raises(ValueError, match="overlap must satisfy"):
        readout_slabs(kspace, 8, -1)
    with pytest.raises(ValueError, match="slab must be >= 1"):
        readout_slabs(kspace, 0)
    with pytest.raises(ValueError, match=r"must be 3D multi-coil \(C, Z, H, W\)"):
        readout_slabs(kspace[0], 8)
    with pytest.raises(ValueError, match=r"must be 3D multi-coil \(C, Z, H, W\)"):
        extract_slab(kspace[None], 0, 8)
    with pytest.raises(ValueError, match="slab rows 8:30 are not a non-empty range"):
        extract_slab(kspace, 8, 30)
    maps = torch.ones_like(kspace)
    mask = torch.ones(1, Z, 1, W)
    with pytest.raises(ValueError, match=r"must be 3D multi-coil"):
        reconstruct_volume_in_slabs(lambda b: b.kspace, kspace[0], mask, maps[0], 8)
    with pytest.raises(ValueError, match="constant along the readout"):
        reconstruct_volume_in_slabs(lambda b: b.kspace, kspace, torch.ones(1, Z, H, W), maps, 8)
    with pytest.raises(ValueError, match="maps must be complex with the k-space shape"):
        reconstruct_volume_in_slabs(lambda b: b.kspace, kspace, mask, maps[:, :4], 8)
    with pytest.raises(ValueError, match=r"reconstruct_fn must return a \(1, Z, h, W\)"):
        reconstruct_volume_in_slabs(lambda b: b.kspace, kspace, mask, maps, 8)
    with pytest.raises(ValueError, match="overlap must satisfy"):
        reconstruct_volume_in_slabs(lambda b: b.kspace, kspace, mask, maps, 8, overlap=8)


def test_slab_dataset_items(files: list[Path]) -> None:
    ds = SlabDataset(files, slab=10, overlap=3, mask_func=poisson(), deterministic_masks=True)
    assert len(ds) == 3 * 3  # 3 volumes x 3 slabs of H = 24
    batch = ds[4]  # a.h5, volume 1, slab (7, 17)
    assert isinstance(batch, MRIBatch) and batch.fft_ndim == 3 and batch.batch_size == 1
    assert batch.kspace.shape == (1, C, Z, 10, W) and batch.kspace.dtype == torch.complex64
    assert batch.maps.shape == (1, C, Z, 10, W)
    assert batch.mask.shape == (1, 1, Z, 1, W) and batch.mask.dtype == torch.float32
    assert batch.target.shape == (1, Z, 10, W)
    assert batch.meta[0]["fname"] == "a.h5" and batch.meta[0]["slice"] == 1
    assert batch.meta[0]["slab"] == (7, 17) and batch.meta[0]["num_slabs"] == 3
    assert 1.5 < batch.mask.numel() / batch.mask.sum() < 2.5  # Poisson disc, R = 2, over (Z, W)
    sampled = batch.mask[0, 0, :, 0, :] != 0  # (Z, W)
    assert torch.all(batch.kspace[0].permute(0, 2, 1, 3)[:, :, ~sampled] == 0)
    # normalised: the slab's zero-filled image peaks at 1; denormalised it is the volume's rows
    zero_filled = batch.operator().adjoint(batch.kspace)
    torch.testing.assert_close(zero_filled.abs().max(), torch.tensor(1.0))
    vol_batch = VolumeDataset(files, mask_func=poisson(), deterministic_masks=True)[1]
    torch.testing.assert_close(vol_batch.mask, batch.mask)  # same mask as the whole volume
    vol_zf = vol_batch.denormalize(vol_batch.operator().adjoint(vol_batch.kspace))
    torch.testing.assert_close(
        batch.denormalize(zero_filled), vol_zf[:, :, 7:17], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        batch.denormalize(batch.target), vol_batch.denormalize(vol_batch.target)[:, :, 7:17]
    )


def test_slab_dataset_espirit_maps_and_errors(files: list[Path]) -> None:
    # tiny volumes need a small ESPIRiT kernel (the default 6^3 leaves no signal subspace)
    options = {"kernel_size": (3, 3, 3), "crop": 0.8}
    mask_func = PoissonDiscMask(acceleration=2.0, calib=(6, 6), seed=0)
    common = {"slab": 12, "mask_func": mask_func, "deterministic_masks": True}
    ds = SlabDataset(files[1], maps="espirit", espirit_options=options, **common)
    assert len(ds) == 2
    true_maps = SlabDataset(files[1], **common)
    for item in range(2):
        batch, truth = ds[item], true_maps[item]
        assert batch.maps.shape == (1, C, Z, 12, W) and batch.maps.dtype == torch.complex64
        assert torch.isfinite(batch.maps.abs()).all()
        # per slab, the estimate spans the true maps up to phase where the coils see signal
        inner = (batch.maps.conj() * truth.maps).sum(1).abs()
        norm = truth.maps.abs().pow(2).sum(1).sqrt()
        inside = norm > 0.1
        assert float((inner[inside] / norm[inside]).mean()) > 0.75
    # slab-wise inference with ESPIRiT maps estimated per slab (maps=None)
    full = torch.from_numpy(read_fastmri(files[1]).kspace[0])
    mask = truth.mask[0]
    image = reconstruct_volume_in_slabs(
        lambda b: b.operator().adjoint(b.kspace),
        full * mask,
        mask,
        None,
        slab=12,
        overlap=4,
        espirit_options=options,
    )
    assert image.shape == (Z, H, W) and torch.isfinite(image.abs()).all() and image.abs().max() > 0
    with pytest.raises(ValueError, match=r"b\.h5: slab \(30 rows\) is larger than"):
        SlabDataset(files[1], slab=30)
    with pytest.raises(ValueError, match="overlap must satisfy"):
        SlabDataset(files[1], slab=8, overlap=9)


def test_slab_dataset_rejects_2d_files(tmp_path: Path, rng: np.random.Generator) -> None:
    kspace = torch.from_numpy(rng.standard_normal((1, C, H, W)).astype(np.complex64))
    path = write_fastmri(tmp_path / "flat.h5", kspace, maps=torch.ones_like(kspace))
    with pytest.raises(DatasetError, match=r"flat\.h5: a '2d' file cannot go in a SlabDataset"):
        SlabDataset(path, slab=8)


@pytest.mark.parametrize(("slab", "overlap"), [(8, 0), (10, 3), (7, 5)])
def test_zero_filled_through_slabs_equals_whole_volume(
    rng: np.random.Generator, slab: int, overlap: int
) -> None:
    data = volume(rng)
    mask = poisson(1)((C, Z, H, W)).to(torch.float64)
    y = data["kspace"] * mask
    op = SenseOp(data["maps"][None], mask[None], 3)
    whole = op.adjoint(y[None])[0]

    def zero_filled(batch: MRIBatch) -> torch.Tensor:
        return batch.operator().adjoint(batch.kspace)

    slabs = reconstruct_volume_in_slabs(zero_filled, y, mask, data["maps"], slab, overlap)
    assert slabs.shape == (Z, H, W) and slabs.dtype == torch.complex128
    torch.testing.assert_close(slabs, whole, rtol=1e-10, atol=1e-12)


def test_cg_sense_through_slabs_is_close_to_whole_volume(rng: np.random.Generator) -> None:
    data = volume(rng, torch.complex64)
    mask = poisson(2)((C, Z, H, W))
    y = data["kspace"] * mask
    op = SenseOp(data["maps"][None], mask[None], 3)
    whole = cg_sense(op, y[None], lam=1e-2, max_iter=50, tol=1e-8)[0]

    def cg(batch: MRIBatch) -> torch.Tensor:
        return cg_sense(batch.operator(), batch.kspace, lam=1e-2, max_iter=50, tol=1e-8)

    slabs = reconstruct_volume_in_slabs(cg, y, mask, data["maps"], slab=12, overlap=4)
    error = torch.linalg.vector_norm(slabs - whole) / torch.linalg.vector_norm(whole)
    # A^H A is block-diagonal over readout rows and CG-SENSE is linear in y (so the per-slab
    # scale cancels): equal up to CG convergence and float32 rounding (measured 4.6e-6)
    assert error < 1e-4, float(error)
    zero_filled = op.adjoint(y[None])[0]
    assert torch.linalg.vector_norm(slabs - zero_filled) > 10 * torch.linalg.vector_norm(
        slabs - whole
    )


def tiny_pgd() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name="pgd", unrolls=2, features=4, blocks=1)
    return build_model(cfg, "3d")


def test_tiny_pgd_network_reconstructs_a_volume_in_slabs(rng: np.random.Generator) -> None:
    data = volume(rng, torch.complex64)
    mask = poisson(3)((C, Z, H, W))
    net = tiny_pgd().eval()
    seen: list[tuple[int, int]] = []

    def network(batch: MRIBatch) -> torch.Tensor:
        seen.append(batch.meta[0]["slab"])
        assert batch.kspace.shape[-2] == 10  # one slab at a time
        return net(Problem.from_batch(batch))

    image = reconstruct_volume_in_slabs(
        network, data["kspace"] * mask, mask, data["maps"], slab=10, overlap=3
    )
    assert seen == [(0, 10), (7, 17), (14, 24)]
    assert image.shape == (Z, H, W) and image.dtype == torch.complex64
    assert torch.isfinite(image.abs()).all() and image.abs().max() > 0


def test_greedy_training_steps_on_slab_items(files: list[Path]) -> None:
    ds = SlabDataset(files, slab=8, mask_func=poisson(), seed=0)
    net = tiny_pgd()
    strategy = build_strategy("greedy", net, build_loss("l1"), lr=1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    for step in range(3):
        batch = collate_batches([ds[2 * step], ds[2 * step + 1]])
        assert batch.kspace.shape == (2, C, Z, 8, W)
        metrics = strategy.train_step(batch)
        assert np.isfinite(metrics["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
