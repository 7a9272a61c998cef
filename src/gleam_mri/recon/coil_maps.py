"""Coil maps that survive a small calibration region: candidates judged on held-out k-space.

ESPIRiT needs a fully sampled calibration block several kernels wide. With the few central lines
of an accelerated line mask (8-13 lines; a reduced field of view where the object reaches the
edges), its maps collapse and every method built on them falls below the zero-filled image.
Joint image/coil estimation does not need such a block: JSENSE (Ying & Sheng, MRM 2007, with
NLINV's truncated-Fourier coils, sigpy's ``JsenseRecon``) fits coil kernels of
:data:`JSENSE_KERNEL` k-space samples per axis and an image to every measured sample.

No single estimator wins everywhere, and there is no reference to tell, so
:class:`ChosenMaps` lets the scan choose (the issue's "choice among candidate maps by held-out
k-space consistency"): the measured samples are split into a pool and a held-out share (whole
lines, drawn uniformly: the held-out sets of ``gleam adapt``; the calibration region stays in
the pool), each candidate estimates maps from the pool, CG-SENSE reconstructs the pool with
them, and the candidate whose image best predicts the held-out samples (SSDU's normalised
l1 + l2) is used, estimated again from every measured sample, provided its loss is lower than
ESPIRiT's by more than :data:`MARGIN` (ESPIRiT otherwise). Shapes: k-space and maps
``(C, *D)``, masks ``(1, *D)``. 2D items are chosen for; cine and 3D items use ESPIRiT (JSENSE
works on them, :func:`jsense_maps`, but the choice is not measured there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.datasets import espirit_estimate
from gleam_mri.physics.operators import SenseOp
from gleam_mri.recon.classical import cg_sense
from gleam_mri.selfsup.data import measured_samples
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.selfsup.split import HELD_OUT_LINES, SplitError, Splitter

__all__ = [
    "CANDIDATES",
    "MAPS_METHODS",
    "ChosenMaps",
    "MapsChoice",
    "describe_maps",
    "espirit_measured",
    "jsense_maps",
    "maps_estimator",
]

MapsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]

JSENSE_KERNEL = 8  # coil kernel width (k-space samples per axis); 16 over-fits 8-line centres
JSENSE_WIDTH = 64  # the central k-space block fitted, per axis: 256 gave the same maps, 15x slower
JSENSE_ITERATIONS = 10  # alternations of coil and image updates (sigpy's default)
# NLINV's l2 penalty on coils and image (sigpy's lamda, data scaled to max |y| = 1): 1e-3 raised
# CG-SENSE's PSNR with the maps by 0.05-0.55 dB on every case of benchmarks/coil_maps.py tried
JSENSE_WEIGHT = 1e-3
# ESPIRiT for scan-specific work: a calibration region of up to 64 samples per axis (line masks
# have few central lines but a fully sampled readout: the longer region conditions the
# calibration matrix) and no crop (maps everywhere, so the noisy background of a real scan is
# reconstructed as it was measured).
ESPIRIT_OPTIONS: dict[str, Any] = {"max_calib_size": 64, "crop": 0.0}
HELD_OUT = 0.2  # share of the measured lines held out to judge the candidates
CG_WEIGHT = 1e-3  # CG-SENSE's Tikhonov weight, relative to max |A^H y| = 1
CG_ITERATIONS = 30
# ESPIRiT is replaced only when a candidate's held-out loss is lower by more than this share:
# where ESPIRiT works the losses differ by a few percent and the lower one was the worse image
# as often as not (the real brain: 1.5 dB lost once); where it collapses they differ by 25-75 %
MARGIN = 0.05


def _frames_averaged(kspace: torch.Tensor, fft_ndim: int) -> bool:
    """Cine k-space ``(C, T, H, W)`` (two encoded axes after a time axis)."""
    return kspace.ndim - 1 > fft_ndim


def espirit_measured(kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int) -> torch.Tensor:
    """ESPIRiT maps ``(C, *D)`` (:data:`ESPIRIT_OPTIONS`) from k-space ``(C, *D)`` and its
    measured samples ``mask`` ``(1, *D)``; cine: one set from the frame average."""
    cine = _frames_averaged(kspace, fft_ndim)
    return espirit_estimate(kspace, mask.to(torch.float32), fft_ndim, cine, **ESPIRIT_OPTIONS)


def jsense_maps(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    fft_ndim: int,
    kernel: int = JSENSE_KERNEL,
    width: int = JSENSE_WIDTH,
) -> torch.Tensor:
    """JSENSE maps ``(C, *D)`` (sigpy's ``JsenseRecon``, normalised to unit root-sum-of-squares)
    from k-space ``(C, *D)`` and its measured samples ``mask`` ``(1, *D)``, fitted to every
    measured sample; cine: one set from the frame average. Deterministic."""
    from sigpy.mri.app import JsenseRecon  # deferred: sigpy loads numba

    cine = _frames_averaged(kspace, fft_ndim)
    data = kspace.mean(dim=1) if cine else kspace
    weights = mask.expand(1, *kspace.shape[1:])[0]
    weights = weights.any(dim=0) if cine else weights
    y = (data * weights).detach().cpu().to(torch.complex128).numpy()
    norm = float(np.abs(y).max())
    if norm == 0:
        raise ValueError("JSENSE: no measured k-space sample is nonzero")
    app = JsenseRecon(
        y / norm,
        mps_ker_width=kernel,
        ksp_calib_width=min(width, *y.shape[1:]),
        weights=weights.detach().cpu().to(torch.float64).numpy(),
        lamda=JSENSE_WEIGHT,
        max_iter=JSENSE_ITERATIONS,
        show_pbar=False,
    )
    maps = torch.from_numpy(np.nan_to_num(app.run())).to(torch.complex64)
    if cine:
        maps = maps.unsqueeze(1).expand_as(kspace)
    return maps.to(kspace.device)


CANDIDATES: dict[str, MapsFn] = {"espirit": espirit_measured, "jsense": jsense_maps}


def heldout_loss(
    kspace: torch.Tensor, pool: torch.Tensor, held: torch.Tensor, maps: torch.Tensor, fft_ndim: int
) -> float:
    """How well CG-SENSE on the ``pool`` samples with ``maps`` predicts the ``held`` samples:
    SSDU's normalised l1 + l2 (k-space and maps ``(C, *D)``, masks bool ``(1, *D)``)."""
    pool_f, held_f = pool[None].to(torch.float32), held[None].to(torch.float32)
    op = SenseOp(maps[None].to(torch.complex64), pool_f, fft_ndim)
    y = (kspace * pool_f[0])[None].to(torch.complex64)
    scale = op.adjoint(y).abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    image = cg_sense(op, y / scale, lam=CG_WEIGHT, max_iter=CG_ITERATIONS)
    batch = MRIBatch(
        kspace=y / scale,
        mask=pool_f,
        maps=maps[None].to(torch.complex64),
        target=None,
        scale=scale.reshape(1),
        fft_ndim=fft_ndim,
        meta=[],
        loss_kspace=(kspace * held_f[0])[None].to(torch.complex64) / scale,
        loss_mask=held_f,
    )
    return float(KspaceLoss()(image, batch))


@dataclass
class MapsChoice:
    """The candidate used for one item and every candidate's held-out loss (lowest: used)."""

    chosen: str
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class ChosenMaps:
    """A maps callable ``(kspace (C, *D), mask (1, *D), fft_ndim) -> maps (C, *D)`` that
    chooses among ``candidates`` per item on held-out lines (module docstring) and records
    each choice in :attr:`choices`. Cine and 3D items use ``fallback`` (one of ``candidates``)."""

    candidates: dict[str, MapsFn] = field(default_factory=lambda: dict(CANDIDATES))
    fallback: str = "espirit"
    seed: int = 0
    choices: list[MapsChoice] = field(default_factory=list)

    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int) -> torch.Tensor:
        """Maps ``(C, *D)`` of the candidate with the lowest held-out loss."""
        measured = measured_samples(kspace, mask)
        if kspace.ndim != 3 or fft_ndim != 2 or len(self.candidates) == 1:
            return self._use(self.fallback, kspace, measured, fft_ndim)
        splitter = Splitter(keep_calibration=True, **HELD_OUT_LINES)
        try:
            pool, held = splitter(measured, HELD_OUT, fft_ndim, self.seed)
        except SplitError:  # too few lines to judge
            return self._use(self.fallback, kspace, measured, fft_ndim)
        losses = {}
        for name, estimate in self.candidates.items():
            maps = estimate(kspace * pool, pool, fft_ndim)
            losses[name] = heldout_loss(kspace, pool, held, maps, fft_ndim)
        best = min(losses, key=losses.__getitem__)
        clear = losses[best] < (1 - MARGIN) * losses[self.fallback]
        return self._use(best if clear else self.fallback, kspace, measured, fft_ndim, losses)

    def _use(self, name: str, kspace, measured, fft_ndim: int, losses=None) -> torch.Tensor:
        self.choices.append(MapsChoice(name, dict(losses or {})))
        return self.candidates[name](kspace, measured, fft_ndim)


MAPS_METHODS = ("auto", *CANDIDATES)


def maps_estimator(method: str = "auto") -> ChosenMaps:
    """The maps callable of ``method``: ``"auto"`` chooses among :data:`CANDIDATES` per item,
    a candidate's name always uses it."""
    if method == "auto":
        return ChosenMaps()
    if method not in CANDIDATES:
        raise ValueError(f"unknown coil-map method {method!r}; valid: {list(MAPS_METHODS)}")
    return ChosenMaps({method: CANDIDATES[method]}, fallback=method)


def describe_maps(choices: list[MapsChoice]) -> str:
    """One line for the user: the estimator of each item, with the held-out losses of one."""
    counts = {
        name: sum(c.chosen == name for c in choices)
        for name in dict.fromkeys(c.chosen for c in choices)
    }
    used = ", ".join(f"{name} for {n} of {len(choices)} item(s)" for name, n in counts.items())
    judged = next((c for c in choices if c.losses), None)
    if judged is None:
        return f"coil maps: {used}"
    tried = ", ".join(f"{name} {loss:.4g}" for name, loss in judged.losses.items())
    return f"coil maps: {used} (chosen on held-out lines; first item's losses: {tried})"
