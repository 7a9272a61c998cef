"""Splitting the measured k-space locations into disjoint sets (SSDU).

Self-supervised training (Yaman et al., "Self-supervised learning of physics-guided
reconstruction neural networks without fully sampled reference data", MRM 2020) splits the
measured locations ``Omega`` of a scan into a set ``Theta`` fed to the network and a disjoint set
``Lambda`` on which the loss is computed in k-space, with fresh random splits every step. The
scan-specific variant (ZS-SSDU, Yaman et al., ICLR 2022) first holds out a third set ``Gamma`` for
validation and early stopping.

Selection follows SSDU's code: ``"gaussian"`` draws held-out locations with a probability that
falls off as a Gaussian of the distance to the k-space centre (standard deviation a quarter of
each Fourier axis), ``"uniform"`` draws them uniformly. A central block of ``keep_center``
samples per Fourier axis (and, with ``keep_calibration``, the whole fully sampled calibration
region) is never held out, so the network input always keeps the low frequencies.

Masks here are bool ``(1, *D)``: the measured locations of one sample, on every k-space axis
(the readout included), as :func:`measured_locations` returns them. A held-out set of
``Lambda`` is a set of *points*, also along the readout: a line mask ``(1, 1, W)`` becomes a
point mask ``(1, H, W)`` after splitting (SSDU does the same). With ``units="lines"`` a
held-out set is instead made of whole lines along every Fourier axis that the mask samples fully
(the readout of a line mask): the network then learns to fill in whole lines, as the mask left
them out, rather than points on lines it partly sees (a 2D mask has no such axis: points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from gleam_mri.crop import center_slices
from gleam_mri.physics.espirit import find_calibration_size

Selection = Literal["gaussian", "uniform"]
SELECTIONS = ("gaussian", "uniform")
Units = Literal["points", "lines"]
UNITS = ("points", "lines")
STD_SCALE = 4.0  # SSDU: the Gaussian's standard deviation is (N - 1) / 4 per Fourier axis
# the held-out sets of gleam adapt and of CS's weight choice: whole lines, drawn uniformly
HELD_OUT_LINES: dict[str, str] = {"units": "lines", "selection": "uniform"}


class SplitError(ValueError):
    """The measured samples cannot be split as asked (too few outside the kept centre)."""


def measured_locations(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The measured locations as bool ``(1, *D)``: ``mask`` (broadcastable to ``(1, *D)``) != 0."""
    return (mask != 0).expand(1, *shape).clone()


def protected_region(
    measured: torch.Tensor, fft_ndim: int, keep_center: int, keep_calibration: bool
) -> torch.Tensor:
    """Bool ``(1, *D)``: the measured samples never held out (centre block, calibration region)."""
    dims = measured.shape[1:]
    encoded = dims[-fft_ndim:]
    protect = torch.zeros_like(measured)
    sizes = [min(keep_center, n) for n in encoded]
    if keep_calibration:
        try:
            calib = find_calibration_size(measured, fft_ndim=fft_ndim, shape=encoded)
        except ValueError:  # the centre itself is not measured: nothing to keep
            calib = (0,) * fft_ndim
        sizes = [max(s, c) for s, c in zip(sizes, calib, strict=True)]
    if min(sizes) > 0:
        protect[(..., *center_slices(encoded, sizes, keep_dc=True))] = True
    return protect & measured


def fully_sampled_axes(measured: torch.Tensor, fft_ndim: int) -> tuple[int, ...]:
    """Fourier axes of ``measured`` (bool ``(1, *D)``) along which every line is all or nothing."""
    axes = range(measured.ndim - fft_ndim, measured.ndim)
    return tuple(a for a in axes if torch.equal(measured.any(a), measured.all(a)))


def _weights(shape: Sequence[int], fft_ndim: int, selection: str) -> torch.Tensor:
    """Selection weight of every location ``(*D)``: Gaussian in the Fourier axes, or uniform."""
    weight = torch.ones(tuple(shape), dtype=torch.float64)
    if selection == "uniform":
        return weight
    for axis in range(len(shape) - fft_ndim, len(shape)):
        n = shape[axis]
        k = torch.arange(n, dtype=torch.float64) - n // 2
        sigma = max((n - 1) / STD_SCALE, 1.0)
        view = [1] * len(shape)
        view[axis] = n
        weight = weight * torch.exp(-0.5 * (k / sigma) ** 2).reshape(view)
    return weight


def hold_out(
    measured: torch.Tensor,
    fraction: float,
    generator: torch.Generator,
    fft_ndim: int,
    selection: Selection = "gaussian",
    keep_center: int = 4,
    keep_calibration: bool = False,
    units: Units = "points",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``measured`` (bool ``(1, *D)``) into ``(kept, held)``, disjoint, union ``measured``.

    ``held`` holds ``round(fraction * measured.sum())`` locations drawn without replacement, or
    that share of the measured lines with ``units="lines"`` (see the module docstring for
    ``selection``, ``units`` and the protected centre). Raises
    :class:`SplitError` when fewer measured locations than that lie outside the protected
    centre, or when the fraction would leave a set empty.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    protect = protected_region(measured, fft_ndim, keep_center, keep_calibration)
    grid, what = measured, "samples"
    if units == "lines" and (axes := fully_sampled_axes(measured, fft_ndim)):
        # draw on the lines (the fully sampled axes collapsed); a line is kept if any is protected
        grid, protect, what = measured.any(axes, True), protect.any(axes, True), "lines"
    total = int(grid.sum())
    count = round(fraction * total)
    candidates = grid & ~protect
    available = int(candidates.sum())
    if count < 1 or count > available or count >= total:
        raise SplitError(
            f"cannot hold out {fraction:.0%} of {total} measured k-space {what}: "
            f"{available} lie outside the kept centre ({int(protect.sum())} {what})"
        )
    weights = (_weights(grid.shape[1:], fft_ndim, selection) * candidates[0]).flatten()
    chosen = torch.multinomial(weights, count, replacement=False, generator=generator)
    held = torch.zeros(grid.numel(), dtype=torch.bool)
    held[chosen] = True
    held = held.reshape(grid.shape).expand_as(measured) & measured
    return measured & ~held, held


@dataclass(frozen=True)
class Splitter:
    """How held-out sets are drawn (see :func:`hold_out`); configured by the ``ssdu`` section."""

    selection: Selection = "gaussian"
    keep_center: int = 4
    keep_calibration: bool = False
    units: Units = "points"

    def __call__(
        self, measured: torch.Tensor, fraction: float, fft_ndim: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept, held)`` bool ``(1, *D)`` from ``measured``, drawn with seed ``seed``."""
        generator = torch.Generator().manual_seed(int(seed))
        return hold_out(
            measured,
            fraction,
            generator,
            fft_ndim,
            self.selection,
            self.keep_center,
            self.keep_calibration,
            self.units,
        )


def validation_seed(seed: int, item: int) -> int:
    """The seed of item ``item``'s fixed validation split in a run seeded ``seed`` (the same for
    ``gleam adapt`` and for CS's weight choice, so that they hold out the same samples)."""
    return int(np.random.SeedSequence([seed, 2**20, item]).generate_state(1)[0])
