"""Coil maps for small calibration regions: JSENSE, and the choice on held-out lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from gleam_mri.metrics import psnr
from gleam_mri.physics.masks import build_mask_func
from gleam_mri.physics.operators import SenseOp
from gleam_mri.physics.phantoms import phantom_2d
from gleam_mri.physics.simulate import simulate_multicoil
from gleam_mri.recon.classical import cg_sense
from gleam_mri.recon.coil_maps import (
    ChosenMaps,
    describe_maps,
    espirit_measured,
    jsense_maps,
    maps_estimator,
)


@pytest.fixture(scope="module")
def reduced_fov():
    """8 coils, 96 x 96, the head reaching the edges of the field of view, 4x random lines
    with 8 central lines: ESPIRiT's maps collapse here."""
    rng = np.random.default_rng(0)
    n = 96
    image = ndimage.zoom(phantom_2d((n, n), rng), 1.4, order=1)
    start = (image.shape[0] - n) // 2
    image = image[start : start + n, start : start + n]
    acq = simulate_multicoil(image, 8, 2, rng, snr_db=30)
    spec = {"name": "random", "center_fractions": [8 / n], "accelerations": [4]}
    mask = build_mask_func(spec)((8, n, n), seed=0)  # (1, 1, W)
    kspace = torch.from_numpy(acq.kspace) * mask
    return kspace, mask.expand(1, n, n), acq.target


def _cg_sense_psnr(kspace, mask, maps, target) -> float:
    op = SenseOp(maps[None], mask[None].float(), 2)
    image = cg_sense(op, kspace[None] / kspace.abs().max(), lam=1e-3, max_iter=50)[0]
    magnitude = image.abs().numpy()
    gain = (magnitude * target).sum() / (magnitude * magnitude).sum()  # the scale is free
    return psnr(target, gain * magnitude)


def test_chosen_maps_beat_espirit_with_eight_central_lines(reduced_fov):
    kspace, mask, target = reduced_fov
    chooser = ChosenMaps()
    chosen = chooser(kspace, mask, 2)
    espirit = _cg_sense_psnr(kspace, mask, espirit_measured(kspace, mask, 2), target)
    robust = _cg_sense_psnr(kspace, mask, chosen, target)
    assert robust > espirit + 3.0, (robust, espirit)  # measured: 24.2 against 14.2 dB
    (choice,) = chooser.choices
    assert set(choice.losses) == {"espirit", "jsense"}
    assert choice.chosen == min(choice.losses, key=choice.losses.__getitem__) == "jsense"
    assert "jsense for 1 of 1" in describe_maps(chooser.choices)


def test_jsense_maps_are_normalised_and_deterministic(reduced_fov):
    kspace, mask, _ = reduced_fov
    first = jsense_maps(kspace, mask, 2)
    assert first.shape == kspace.shape and first.dtype == torch.complex64
    rss = (first.abs() ** 2).sum(0).sqrt()
    assert torch.allclose(rss, torch.ones_like(rss), atol=1e-4)
    assert torch.equal(first, jsense_maps(kspace, mask, 2))


def test_cine_uses_the_fallback_and_names_are_checked(reduced_fov):
    kspace, mask, _ = reduced_fov
    cine = kspace[:, None].repeat(1, 2, 1, 1)  # (C, T, H, W)
    chooser = maps_estimator("auto")
    maps = chooser(cine, mask[:, None].expand(1, 2, *mask.shape[1:]), 2)
    assert maps.shape == cine.shape and chooser.choices[0].chosen == "espirit"
    assert chooser.choices[0].losses == {}
    only = maps_estimator("jsense")
    only(kspace, mask, 2)
    assert only.choices[0].chosen == "jsense"
    with pytest.raises(ValueError, match="unknown coil-map method 'nlinv'"):
        maps_estimator("nlinv")
