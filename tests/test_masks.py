"""Sampling masks: exact agreement with fastMRI, the mask protocol, Poisson disc and cine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from fastmri.data import subsample as fastmri_subsample

from gleam_mri.physics.masks import (
    CartesianMask,
    CineMask,
    EquispacedMaskFractionFunc,
    PoissonDiscMask,
    RandomMaskFunc,
    acceleration_of,
    build_mask_func,
    center_slice,
)
from gleam_mri.physics.poisson import poisson_disc_pattern

PAIRS = [
    pytest.param(RandomMaskFunc, fastmri_subsample.RandomMaskFunc, id="random"),
    pytest.param(
        EquispacedMaskFractionFunc, fastmri_subsample.EquispacedMaskFractionFunc, id="equispaced"
    ),
]


# --- exact agreement with the fastmri package -------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize("cols", [368, 372, 321, 33])
def test_single_setting_equals_fastmri(ours, theirs, cols):
    settings = itertools.product((0.08, 0.04), (4, 8), (0, 1, 42, (3, 7)), (None, 0, 2))
    for fraction, acceleration, seed, offset in settings:
        shape = (4, 24, cols, 2) if seed != 1 else (24, cols, 2)
        mask, num_low = ours([fraction], [acceleration])(shape, offset=offset, seed=seed)
        ref, ref_low = theirs([fraction], [acceleration])(shape, offset=offset, seed=seed)
        assert mask.dtype == torch.float32
        assert mask.shape == ref.shape == (*[1] * (len(shape) - 2), cols, 1)
        assert torch.equal(mask, ref), (fraction, acceleration, seed, offset)
        assert num_low == ref_low == round(cols * fraction)
        assert isinstance(num_low, int)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
@pytest.mark.parametrize("allow_any", [False, True])
def test_state_progression_equals_fastmri(ours, theirs, allow_any):
    """Constructor seed, seed=None calls, choice among settings, interleaved per-call seeds."""
    kwargs = {"allow_any_combination": allow_any, "seed": 123}
    mine = ours([0.08, 0.04], [4, 8], **kwargs)
    ref = theirs([0.08, 0.04], [4, 8], **kwargs)
    lows = set()
    for call in range(16):
        shape = (2, 16, (368, 321, 372)[call % 3], 2)
        seed = 5 if call % 4 == 3 else None  # a per-call seed must not disturb the state
        offset = 1 if call % 5 == 4 else None
        mask, num_low = mine(shape, offset=offset, seed=seed)
        ref_mask, ref_low = ref(shape, offset=offset, seed=seed)
        assert torch.equal(mask, ref_mask), call
        assert num_low == ref_low
        lows.add(num_low)
    assert len(lows) > 2  # the fraction really is drawn among the settings


def test_unseeded_objects_are_random():
    masks = [RandomMaskFunc([0.08], [4])((1, 8, 368, 2))[0] for _ in range(3)]
    assert not all(torch.equal(masks[0], m) for m in masks[1:])


# --- behaviour of the fastMRI-compatible masks ------------------------------------------------


@pytest.mark.parametrize("cls", [RandomMaskFunc, EquispacedMaskFractionFunc])
@pytest.mark.parametrize("cols", [368, 321])
def test_centre_sampled_and_acceleration_near_target(cls, cols):
    func = cls([0.08, 0.04], [4, 8], seed=0)
    counts = {4: [], 8: []}
    for seed in range(60):
        mask, num_low = func((1, 8, cols, 2), seed=seed)
        profile = mask.reshape(cols)
        assert num_low in (round(cols * 0.08), round(cols * 0.04))
        assert torch.all(profile[center_slice(cols, num_low)] == 1)
        assert set(profile.unique().tolist()) <= {0.0, 1.0}
        counts[4 if num_low == round(cols * 0.08) else 8].append(profile.sum().item())
    for acceleration, sampled in counts.items():
        achieved = cols / np.mean(sampled)
        assert abs(achieved - acceleration) / acceleration < 0.05, (acceleration, achieved)


def test_centre_placement_odd_and_even():
    assert center_slice(8, 2) == slice(3, 5)  # k=0 sits at index n // 2 after fftshift
    assert center_slice(7, 3) == slice(2, 5)
    assert center_slice(7, 0) == slice(4, 4)


def test_fastmri_errors():
    with pytest.raises(ValueError, match="acceleration"):
        RandomMaskFunc([0.08], [1])
    with pytest.raises(ValueError, match="acceleration"):
        EquispacedMaskFractionFunc([0.08], [0.5])
    with pytest.raises(ValueError, match="same length"):
        RandomMaskFunc([0.08, 0.04], [4])
    with pytest.raises(ValueError, match="empty"):
        RandomMaskFunc([], [])
    with pytest.raises(ValueError, match="center fraction"):
        RandomMaskFunc([-0.1], [4])
    with pytest.raises(ValueError, match="center fraction"):
        EquispacedMaskFractionFunc([1.5], [4])
    with pytest.raises(TypeError, match="number"):
        RandomMaskFunc([0.08], ["4"])
    with pytest.raises(ValueError, match="fills the whole matrix"):
        RandomMaskFunc([1.0], [4])((1, 8, 32, 2))
    with pytest.raises(ValueError, match="3 axes"):
        RandomMaskFunc([0.08], [4])((368, 2))
    with pytest.raises(ValueError, match="offset"):
        EquispacedMaskFractionFunc([0.08], [4])((1, 8, 368, 2), offset=-1)
    with pytest.raises(ValueError, match="samples no column"):
        RandomMaskFunc([0.0], [1000])((1, 8, 6, 2), seed=0)
    with pytest.raises(ValueError, match="samples no column"):
        EquispacedMaskFractionFunc([0.0], [4])((1, 8, 8, 2), offset=7)


def test_equispaced_centre_beyond_target_samples_only_centre():
    mask, num_low = EquispacedMaskFractionFunc([0.5], [4])((1, 8, 32, 2), seed=0)
    ref, _ = fastmri_subsample.EquispacedMaskFractionFunc([0.5], [4])((1, 8, 32, 2), offset=0)
    assert num_low == 16 and mask.sum() == 16 and torch.equal(mask, ref)


# --- the project's mask-function protocol -----------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_cartesian_mask_profile_is_fastmri(kind):
    theirs = {
        "random": fastmri_subsample.RandomMaskFunc,
        "equispaced": fastmri_subsample.EquispacedMaskFractionFunc,
    }[kind]
    mine = CartesianMask(kind, [0.08, 0.04], [4, 8], seed=3)
    ref = theirs([0.08, 0.04], [4, 8], seed=3)
    for call, width in enumerate([368, 321, 372, 33]):
        seed = 11 if call == 2 else None
        mask = mine((5, 20, width), seed=seed)
        assert mask.shape == (1, 1, width) and mask.dtype == torch.float32
        ref_mask, _ = ref((5, 20, width, 2), seed=seed)
        assert torch.equal(mask.reshape(width), ref_mask.reshape(width))


def test_cartesian_mask_on_three_axes_repeats_the_pattern():
    mask = CartesianMask("random", [0.08], [4])((3, 6, 10, 64), seed=2)
    assert mask.shape == (1, 6, 1, 64)
    assert torch.equal(mask[0, :, 0], mask[0, :1, 0].expand(6, 64))
    flat = CartesianMask("random", [0.08], [4])((3, 10, 64), seed=2)
    assert torch.equal(mask[0, 0, 0], flat[0, 0])


def _protocol_cases():
    return [
        (CartesianMask("random", [0.08], [4], seed=0), (4, 16, 96)),
        (CartesianMask("equispaced", [0.08], [4], seed=0), (4, 16, 96)),
        (PoissonDiscMask(4, calib=(6, 6), seed=0), (4, 24, 5, 20)),
        (CineMask(4, center_lines=6, seed=0), (4, 5, 7, 48)),
    ]


@pytest.mark.parametrize("case", range(4), ids=["random", "equispaced", "poisson", "cine"])
def test_protocol_shape_reproducibility_and_seeds(case):
    mask_fn, kspace_shape = _protocol_cases()[case]
    mask = mask_fn(kspace_shape, seed=7)
    dims = kspace_shape[1:]
    assert mask.shape == (1, *dims[:-2], 1, dims[-1]) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.ones(kspace_shape).mul(mask).shape == kspace_shape  # broadcasts to (C, *D)
    assert torch.equal(mask, mask_fn(kspace_shape, seed=7))
    others = [mask_fn(kspace_shape, seed=s) for s in range(8, 12)]
    assert any(not torch.equal(mask, m) for m in others)
    again, twin = _protocol_cases()[case][0], _protocol_cases()[case][0]
    first = [again(kspace_shape) for _ in range(3)]  # same constructor seed -> same sequence
    assert all(torch.equal(a, twin(kspace_shape)) for a in first)
    assert not torch.equal(first[0], first[1])


# --- Poisson disc -----------------------------------------------------------------------------


@pytest.mark.parametrize("acceleration", [4, 6, 8])
@pytest.mark.parametrize("variable_density", [True, False])
def test_poisson_acceleration_and_calibration(acceleration, variable_density):
    depth, width, calib = 64, 48, (12, 10)
    mask_fn = PoissonDiscMask(acceleration, calib=calib, variable_density=variable_density)
    mask = mask_fn((2, depth, 3, width), seed=acceleration)
    assert mask.shape == (1, depth, 1, width)
    plane = mask[0, :, 0]
    assert int(plane.sum()) == round(depth * width / acceleration)
    assert abs(acceleration_of(mask) - acceleration) / acceleration < 0.01
    assert torch.all(plane[center_slice(depth, calib[0]), center_slice(width, calib[1])] == 1)


def test_poisson_on_2d_kspace_covers_both_phase_encoding_axes():
    """2D slices of a 3D scan (both axes phase encodes, the GLEAM paper's knee): (1, H, W), the
    same pattern as the (Z, W) plane of a 3D mask with the same seed."""
    mask_fn = PoissonDiscMask(4, calib=(6, 6))
    mask = mask_fn((3, 32, 24), seed=5)
    assert mask.shape == (1, 32, 24)
    assert torch.equal(mask[0], mask_fn((3, 32, 7, 24), seed=5)[0, :, 0])
    assert int(mask.sum()) == round(32 * 24 / 4)
    assert torch.all(mask[0, center_slice(32, 6), center_slice(24, 6)] == 1)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        mask_fn((24,), seed=0)


def _nearest_distances(pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.argwhere(pattern).astype(float)
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return points, dist.min(axis=1)


def test_poisson_uniform_keeps_a_minimum_distance():
    for seed in range(3):
        pattern = poisson_disc_pattern(
            (64, 48), 8, rng=np.random.default_rng(seed), variable_density=False
        )
        _, nearest = _nearest_distances(pattern)
        assert nearest.min() >= 2.0


def test_poisson_variable_density_is_denser_at_the_centre():
    shape = (64, 64)
    pattern = poisson_disc_pattern(shape, 5, rng=np.random.default_rng(0))
    points, nearest = _nearest_distances(pattern)
    radius = np.hypot((points[:, 0] - 32) / 32, (points[:, 1] - 32) / 32)
    inner, outer = nearest[radius < 0.4].mean(), nearest[radius > 0.8].mean()
    assert outer > 1.4 * inner
    row = pattern[32].astype(float)
    assert row[24:40].mean() > 2 * row[:8].mean()


def test_poisson_errors():
    with pytest.raises(ValueError, match="acceleration"):
        PoissonDiscMask(1.0)
    with pytest.raises(ValueError, match="calib"):
        PoissonDiscMask(4, calib=(-1, 4))
    with pytest.raises(ValueError, match="calib"):
        PoissonDiscMask(4, calib=(4,))
    with pytest.raises(ValueError, match="does not fit"):
        PoissonDiscMask(4, calib=(40, 8))((2, 32, 4, 32))
    with pytest.raises(ValueError, match="more than"):
        PoissonDiscMask(8, calib=(16, 16))((2, 32, 4, 32))
    with pytest.raises(ValueError, match=r"\(C, Z, H, W\)"):
        PoissonDiscMask(4)((2, 32))  # 2D (C, H, W) is accepted since the paper configs
    with pytest.raises(ValueError, match="no sample"):
        PoissonDiscMask(100)((2, 4, 4, 4))


# --- cine -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["random", "equispaced"])
def test_cine_frames_differ_and_keep_the_centre(pattern):
    frames, width, center, acceleration = 10, 96, 8, 6
    mask = CineMask(acceleration, center, seed=0, pattern=pattern)((3, frames, 12, width))
    assert mask.shape == (1, frames, 1, width)
    lines = mask[0, :, 0]
    assert torch.all(lines[:, center_slice(width, center)] == 1)
    assert torch.all(lines.sum(dim=1) == round(width / acceleration))
    assert all(not torch.equal(lines[t], lines[t + 1]) for t in range(frames - 1))
    assert abs(acceleration_of(mask) - acceleration) / acceleration < 0.05


def test_cine_equispaced_lines_are_evenly_spaced():
    width, center = 96, 8
    mask = CineMask(4, center, seed=1, pattern="equispaced")((1, 6, 4, width))[0, :, 0]
    outer = np.setdiff1d(np.arange(width), np.arange(width)[center_slice(width, center)])
    for frame in mask.numpy():
        gaps = np.diff(np.flatnonzero(frame[outer]))
        assert gaps.max() - gaps.min() <= 1


def test_cine_errors():
    with pytest.raises(ValueError, match="acceleration"):
        CineMask(0.5, 4)
    with pytest.raises(ValueError, match="center_lines"):
        CineMask(4, -2)
    with pytest.raises(ValueError, match="pattern"):
        CineMask(4, 4, pattern="spiral")
    with pytest.raises(ValueError, match="exceeds"):
        CineMask(4, 40)((2, 5, 8, 32))
    with pytest.raises(ValueError, match="frames could not differ"):
        CineMask(8, 8)((2, 5, 8, 64))
    with pytest.raises(ValueError, match=r"rank 3"):
        CineMask(4, 4)((2, 8, 32))


def test_cartesian_errors():
    with pytest.raises(ValueError, match="kind"):
        CartesianMask("spiral", [0.08], [4])
    with pytest.raises(ValueError, match="rank 2 or 3"):
        CartesianMask("random", [0.08], [4])((2, 32))
    with pytest.raises(ValueError, match="rank 2 or 3"):
        CartesianMask("random", [0.08], [4])((2, 3, 4, 5, 32))
    with pytest.raises(ValueError, match="acceleration"):
        CartesianMask("equispaced", [0.08], [1])


# --- factory and helper -----------------------------------------------------------------------


def test_build_mask_func():
    spec = {"name": "random", "center_fractions": [0.08], "accelerations": [4], "seed": 0}
    built = build_mask_func(spec)
    assert isinstance(built, CartesianMask)
    assert torch.equal(built((2, 8, 64)), CartesianMask("random", [0.08], [4], seed=0)((2, 8, 64)))
    assert spec["name"] == "random"  # the spec is not consumed
    equi = build_mask_func({"name": "equispaced", "center_fractions": [0.08], "accelerations": [4]})
    assert equi.kind == "equispaced"
    poisson = build_mask_func({"name": "poisson", "acceleration": 6, "calib": [12, 12]})
    assert isinstance(poisson, PoissonDiscMask) and poisson.calib == (12, 12)
    assert poisson((2, 40, 3, 36), seed=0).shape == (1, 40, 1, 36)
    cine = build_mask_func({"name": "cine", "acceleration": 8, "center_lines": 8})
    assert isinstance(cine, CineMask) and cine((2, 4, 3, 128), seed=0).shape == (1, 4, 1, 128)


def test_build_mask_func_errors():
    with pytest.raises(ValueError, match=r"'cine', 'equispaced', 'poisson', 'random'"):
        build_mask_func({"name": "spiral"})
    with pytest.raises(ValueError, match="missing keys"):
        build_mask_func({"name": "cine", "acceleration": 8})
    with pytest.raises(ValueError, match=r"unknown keys \['radius'\]"):
        build_mask_func({"name": "poisson", "acceleration": 6, "radius": 2})
    with pytest.raises(TypeError, match="dict"):
        build_mask_func(["random"])


def test_acceleration_of():
    assert acceleration_of(torch.tensor([1.0, 0.0, 0.0, 0.0])) == 4.0
    assert acceleration_of(np.array([[True, False], [False, False]])) == 4.0
    profile = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 6)
    assert acceleration_of(profile) == acceleration_of(profile.expand(1, 9, 6)) == 3.0
    with pytest.raises(ValueError, match="nothing"):
        acceleration_of(torch.zeros(1, 1, 8))
