"""MRI physics: the multi-coil forward operator (tensor conventions in ``operators``), sampling
masks, coil maps (birdcage, ESPIRiT, from real k-space), phantoms, real anatomy and simulation."""

from __future__ import annotations

from gleam_mri.physics.coils import birdcage_maps, rss, rss_of_kspace
from gleam_mri.physics.espirit import espirit_maps
from gleam_mri.physics.masks import CartesianMask, CineMask, acceleration_of, build_mask_func
from gleam_mri.physics.operators import LinearOperator, SenseOp
from gleam_mri.physics.phantoms import cine_phantom, phantom_2d, phantom_3d
from gleam_mri.physics.poisson import PoissonDiscMask
from gleam_mri.physics.simulate import simulate_multicoil

__all__ = [
    "CartesianMask",
    "CineMask",
    "LinearOperator",
    "PoissonDiscMask",
    "SenseOp",
    "acceleration_of",
    "birdcage_maps",
    "build_mask_func",
    "cine_phantom",
    "espirit_maps",
    "phantom_2d",
    "phantom_3d",
    "rss",
    "rss_of_kspace",
    "simulate_multicoil",
]
