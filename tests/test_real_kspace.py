"""Real 8-coil brain k-space (Poisson-disc, R~8): ESPIRiT maps from its calibration region and
CG-SENSE. There is no fully sampled reference, so the checks are data consistency, sanity of the
maps and the image, and a PNG to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from gleam_mri.physics.espirit import espirit_maps, find_calibration_size
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense, zero_filled

LAM = 1e-3  # relative: the maps have unit norm, so ||A^H A|| <= 1 after scaling the data


@pytest.fixture
def brain(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """k-space ``(1, 8, 230, 180)`` scaled to max |y| = 1 and the sampling mask ``(230, 180)``."""
    kspace = torch.from_numpy(np.load(shared_data / "brain8ch_poisson_R8.npy"))
    assert kspace.shape == (8, 230, 180) and kspace.dtype == torch.complex64
    mask = (kspace != 0).any(dim=0)
    return kspace[None] / kspace.abs().max(), mask


@pytest.fixture
def maps(brain: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    kspace, mask = brain
    return espirit_maps(kspace[0], calib_size=find_calibration_size(mask), kernel_size=6)


def test_mask_has_24x24_calibration_and_r8(brain):
    _, mask = brain
    assert find_calibration_size(mask) == (24, 24)
    assert 7 < mask.numel() / mask.sum().item() < 9


def test_espirit_maps_on_real_data_are_sane(maps):
    assert maps.shape == (8, 230, 180) and maps.dtype == torch.complex64
    assert bool(torch.isfinite(maps).all())
    norm = maps.abs().pow(2).sum(0).sqrt()
    inside = norm > 0
    torch.testing.assert_close(norm[inside], torch.ones_like(norm[inside]), rtol=0, atol=1e-5)
    assert 0.4 < inside.float().mean().item() < 0.9  # the head, not the whole field of view
    assert not bool(inside[:10, :10].any()) and bool(inside[105:125, 80:100].all())
    # smooth: neighbouring pixels inside the crop differ little (phase normalised consistently)
    both = inside[:, 1:] & inside[:, :-1]
    step = (maps[:, :, 1:] - maps[:, :, :-1]).abs().pow(2).sum(0).sqrt()[both]
    assert step.mean() < 0.02 and step.max() < 0.2


def test_cg_sense_on_real_data_is_consistent_and_clean(brain, maps, tmp_path):
    kspace, mask = brain
    op = SenseOp(maps[None], mask)

    def residual(x: torch.Tensor) -> float:
        return ((op(x) - kspace).norm() / kspace.norm()).item()

    def objective(x: torch.Tensor) -> float:
        return ((op(x) - kspace).norm() ** 2 + LAM * x.norm() ** 2).item()

    start = zero_filled(op, kspace)
    recons = {n: cg_sense(op, kspace, lam=LAM, max_iter=n) for n in (5, 15, 30)}
    image = recons[30][0]
    assert bool(torch.isfinite(image).all())
    objectives = [objective(recons[n]) for n in (5, 15, 30)]
    assert objectives[0] > objectives[1] > objectives[2]  # CG decreases the objective
    residuals = [residual(recons[n]) for n in (5, 15, 30)]
    assert residuals[2] <= residuals[0] < 0.5 * residual(start)
    assert residuals[2] < 0.05 < residual(start)

    magnitude = image.abs()
    assert magnitude.max() > 0
    head = magnitude > 0.1 * magnitude.max()
    assert 0.3 < head.float().mean().item() < 0.9
    assert magnitude[105:125, 80:100].mean() > 0.2 * magnitude.max()  # signal in the brain centre
    assert magnitude[:10, :10].max() == 0  # no signal outside the ESPIRiT crop

    png = tmp_path / "brain_cg_sense.png"
    fig = Figure(figsize=(7, 4.5))
    panels = {"zero-filled": start[0], "CG-SENSE, ESPIRiT maps": image}
    for ax, (title, img) in zip(fig.subplots(1, 2), panels.items(), strict=True):
        ax.imshow(img.abs().numpy(), cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(png, dpi=100)
    pixels = imread(png)
    assert pixels.shape[:2] == (450, 700) and pixels.std() > 0.05
