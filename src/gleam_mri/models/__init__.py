"""Unrolled reconstruction networks: regularisers, data consistency, iterations, the unrolled
network (split into modules for greedy training), VarNet's cascade and learned maps, builders."""

from __future__ import annotations

from gleam_mri.models.builders import build_model, modl, pgd_resnet, varnet
from gleam_mri.models.dc import GradientDC, KspaceDC, ProximalDC
from gleam_mri.models.iterations import MoDLIteration, PGDIteration
from gleam_mri.models.regularizers import build_regularizer
from gleam_mri.models.unrolled import Iteration, Problem, UnrolledNet
from gleam_mri.models.varnet import SensitivityModel, VarNetCascade

__all__ = [
    "GradientDC",
    "Iteration",
    "KspaceDC",
    "MoDLIteration",
    "PGDIteration",
    "Problem",
    "ProximalDC",
    "SensitivityModel",
    "UnrolledNet",
    "VarNetCascade",
    "build_model",
    "build_regularizer",
    "modl",
    "pgd_resnet",
    "varnet",
]
