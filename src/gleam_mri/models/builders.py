"""Ready-made unrolled networks: PGD-ResNet (GLEAM), MoDL and E2E-VarNet, built from a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gleam_mri.models.dc import GradientDC, KspaceDC, ProximalDC
from gleam_mri.models.iterations import MoDLIteration, PGDIteration
from gleam_mri.models.lipschitz import bound_spectral_norms_
from gleam_mri.models.regularizers import build_regularizer
from gleam_mri.models.unrolled import Iteration, UnrolledNet
from gleam_mri.models.varnet import SensitivityModel, VarNetCascade

DIMS_OF_KIND = {"2d": "2d", "3d": "3d", "cine": "2d+t"}


def _regularizer(
    name: str, dims: str, features: int, blocks: int, levels: int, spectral_bound: float | None
) -> nn.Module:
    if name == "resnet":
        reg = build_regularizer("resnet", dims, features=features, blocks=blocks)
    else:
        reg = build_regularizer("unet", dims, features=features, levels=levels)
    return reg if spectral_bound is None else bound_spectral_norms_(reg, spectral_bound)


def _iterations(
    iteration: Callable[[nn.Module], Iteration],
    regularizer: str,
    dims: str,
    features: int,
    blocks: int,
    levels: int,
    unrolls: int,
    shared: bool,
    spectral_bound: float | None = None,
) -> list[Iteration]:
    """``unrolls`` iterations ``iteration(regulariser)``, each with its own regulariser (or one
    shared by all); ``spectral_bound``: see :mod:`gleam_mri.models.lipschitz`."""

    def make() -> Iteration:
        reg = _regularizer(regularizer, dims, features, blocks, levels, spectral_bound)
        return iteration(reg)

    if shared:
        one = make()
        return [one] * unrolls
    return [make() for _ in range(unrolls)]


def pgd_resnet(
    dims: str = "2d",
    unrolls: int = 8,
    features: int = 64,
    blocks: int = 5,
    regularizer: str = "resnet",
    levels: int = 3,
    shared_weights: bool = False,
    invertible: bool = False,
    spectral_bound: float | None = None,
    step_init: float | None = None,
    step_max: float | None = None,
) -> UnrolledNet:
    """PGD with a ResNet denoiser per iteration, as in the GLEAM paper (image state).

    ``step_init`` (default ``1 / L``, or ``step_max / 2``) and ``step_max`` (a bound on the learned
    step, e.g. ``0.5`` for MEL's inversion): see :class:`~gleam_mri.models.dc.GradientDC`."""
    iterations = _iterations(
        lambda reg: PGDIteration(reg, GradientDC(step_init=step_init, step_max=step_max)),
        regularizer, dims, features, blocks, levels, unrolls, shared_weights, spectral_bound,
    )  # fmt: skip
    return UnrolledNet(iterations, "image", invertible=invertible)


def modl(
    dims: str = "2d",
    unrolls: int = 8,
    features: int = 64,
    blocks: int = 5,
    regularizer: str = "resnet",
    levels: int = 3,
    shared_weights: bool = False,
    invertible: bool = False,
    spectral_bound: float | None = None,
    lam_init: float = 0.05,
    cg_iters: int = 10,
) -> UnrolledNet:
    """MoDL: denoiser then a CG proximal step (implicit backward) per iteration (image state).

    The original MoDL shares weights across iterations; here that is ``shared_weights=True``
    (greedy training needs separate weights, the default).
    """

    iterations = _iterations(
        lambda reg: MoDLIteration(reg, ProximalDC(lam_init=lam_init, max_iter=cg_iters)),
        regularizer, dims, features, blocks, levels, unrolls, shared_weights, spectral_bound,
    )  # fmt: skip
    return UnrolledNet(iterations, "image", invertible=invertible)


def varnet(
    dims: str = "2d",
    unrolls: int = 12,
    features: int = 18,
    levels: int = 4,
    sens_features: int = 8,
    sens_levels: int = 4,
    sens_chunk: int | None = None,
    regularizer: str = "unet",
    blocks: int = 5,
    shared_weights: bool = False,
    invertible: bool = False,
    spectral_bound: float | None = None,
    eta_init: float = 1.0,
) -> UnrolledNet:
    """E2E-VarNet: U-Net cascades in k-space and a learned sensitivity model (k-space state)."""

    prologue = SensitivityModel(dims, features=sens_features, levels=sens_levels, chunk=sens_chunk)
    iterations = _iterations(
        lambda reg: VarNetCascade(reg, KspaceDC(eta_init=eta_init)),
        regularizer, dims, features, blocks, levels, unrolls, shared_weights, spectral_bound,
    )  # fmt: skip
    return UnrolledNet(iterations, "kspace", prologue=prologue, invertible=invertible)


BUILDERS: dict[str, Callable[..., UnrolledNet]] = {
    "pgd": pgd_resnet,
    "modl": modl,
    "varnet": varnet,
}


def build_model(model_cfg: Any, kind: str) -> UnrolledNet:
    """The network of a :class:`gleam_mri.config.ModelConfig` for data of ``kind``."""
    if model_cfg.name not in BUILDERS:
        raise ValueError(f"unknown model {model_cfg.name!r}; valid: {', '.join(BUILDERS)}")
    if kind not in DIMS_OF_KIND:
        raise ValueError(f"unknown data kind {kind!r}; valid: {', '.join(DIMS_OF_KIND)}")
    dims = DIMS_OF_KIND[kind] if model_cfg.dims == "auto" else model_cfg.dims
    common = {
        "dims": dims,
        "unrolls": model_cfg.unrolls,
        "features": model_cfg.features,
        "levels": model_cfg.levels,
        "blocks": model_cfg.blocks,
        "regularizer": model_cfg.regularizer,
        "shared_weights": model_cfg.shared_weights,
        "invertible": model_cfg.invertible,
        "spectral_bound": model_cfg.spectral_bound,
    }
    if model_cfg.name == "varnet":
        common.update(
            sens_features=model_cfg.sens_features,
            sens_levels=model_cfg.sens_levels,
            sens_chunk=model_cfg.sens_chunk,
        )
    dc = dict(model_cfg.dc)
    try:
        return BUILDERS[model_cfg.name](**common, **dc)
    except TypeError as err:
        raise ValueError(f"bad model.dc options {dc} for model {model_cfg.name!r}: {err}") from err
