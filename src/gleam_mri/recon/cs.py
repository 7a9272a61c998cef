"""Compressed sensing: l1-wavelet regularised SENSE, its weight chosen per scan on held-out k-space.

    x = argmin_x 1/2 ||M (F S x - y)||_2^2 + lam ||W x||_1

the problem of BART's ``pics -R W:...`` and sigpy's ``L1WaveletRecon``, which solves it here
(Daubechies-4 wavelets, accelerated proximal gradient, :data:`ITERATIONS` iterations; 2D and 3D
over every encoded axis, cine frame by frame). Items are normalised as the data sets normalise
them (``max |A^H y| = 1``), so one grid of weights fits every scan.

No reference is needed to choose ``lam``: each item's measured samples are split once into a pool
and a held-out set (:data:`VALIDATION_FRACTION` of them, whole lines drawn uniformly: the
held-out sets of ``gleam adapt``), CS runs on the pool at every weight of :data:`LAMBDAS`, and the
weight whose image best predicts the held-out samples (SSDU's normalised l1 + l2,
:class:`~gleam_mri.selfsup.loss.KspaceLoss`, averaged over the items) is chosen
(:func:`choose_lambda`). The final image then uses every measured sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.selfsup.data import measured_mask, with_split
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.selfsup.split import HELD_OUT_LINES, Splitter, validation_seed

__all__ = [
    "ITERATIONS",
    "LAMBDAS",
    "LambdaChoice",
    "choose_lambda",
    "heldout_items",
    "l1_wavelet",
]

LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # for items normalised to max |A^H y| = 1
ITERATIONS = 100
VALIDATION_FRACTION = 0.2
SPLITTER = Splitter(**HELD_OUT_LINES)  # gleam adapt's held-out sets


def _solve(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray, lam: float, iters: int):
    """One l1-wavelet SENSE problem: k-space and maps ``(C, *D)``, mask (0/1) broadcastable to
    them. The step is ``1 / max_pixel sum_c |S_c|^2``, a bound on ``||A^H A||`` (a masked
    orthonormal FFT does not grow a norm), instead of sigpy's power iteration, which starts from
    numpy's global random state: the result depends on the inputs alone."""
    from sigpy.mri.app import L1WaveletRecon  # deferred: sigpy loads numba

    bound = float((np.abs(maps) ** 2).sum(axis=0).max())
    step = 1.0 / bound if bound > 0 else 1.0
    app = L1WaveletRecon(
        kspace, maps, lam, weights=mask, show_pbar=False, max_iter=iters, alpha=step
    )
    return app.run()


def l1_wavelet(batch: MRIBatch, lam: float, iterations: int = ITERATIONS) -> torch.Tensor:
    """Complex image ``(B, *D)`` of every item from its k-space, mask and maps (on the CPU).

    2D and 3D items are solved over their encoded axes; cine items ``(T, H, W)`` frame by frame
    (time is not Fourier-encoded). ``lam``: the l1 weight on the normalised data.
    """
    kspace = batch.kspace.detach().cpu().numpy()
    maps = batch.maps.detach().cpu().to(torch.complex64).numpy()
    mask = batch.mask.detach().cpu().to(torch.float32).numpy()
    shape = kspace.shape[2:]
    frames = len(shape) - batch.fft_ndim  # leading axes that are not encoded (cine: 1)
    out = np.zeros((kspace.shape[0], *shape), np.complex64)
    for b in range(kspace.shape[0]):
        full = np.broadcast_to(mask[b], kspace.shape[1:])
        for index in np.ndindex(*shape[:frames]):
            at = (slice(None), *index)
            out[(b, *index)] = _solve(kspace[b][at], maps[b][at], full[at], lam, iterations)
    return torch.from_numpy(out).to(batch.kspace.device)


def heldout_items(
    items: Sequence[MRIBatch],
    fraction: float = VALIDATION_FRACTION,
    seed: int = 0,
    splitter: Splitter = SPLITTER,
) -> list[MRIBatch]:
    """Each B=1 item with its measured samples split once: ``kspace`` / ``mask`` the pool,
    ``loss_kspace`` / ``loss_mask`` the held-out ``fraction`` (seeded as ``gleam adapt`` seeds
    its validation splits). Raises :class:`~gleam_mri.selfsup.split.SplitError` when an item's
    samples cannot be split."""
    out = []
    for i, item in enumerate(items):
        seeded = validation_seed(seed, i)
        pool, held = splitter(measured_mask(item, 0), fraction, item.fft_ndim, seeded)
        out.append(with_split(item, 0, pool, held))
    return out


@dataclass
class LambdaChoice:
    """The chosen l1 weight and the held-out loss of every weight tried (lowest: chosen)."""

    lam: float
    losses: dict[float, float] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        """The held-out loss of the chosen weight."""
        return self.losses[self.lam]


def choose_lambda(
    validation: Sequence[MRIBatch],
    lambdas: Sequence[float] = LAMBDAS,
    iterations: int = ITERATIONS,
) -> LambdaChoice:
    """The weight of ``lambdas`` whose CS image of each item's pool best predicts its held-out
    samples, on average over ``validation`` (items of :func:`heldout_items`)."""
    if not validation or not lambdas:
        raise ValueError("choosing the l1 weight needs validation items and weights to try")
    loss_fn = KspaceLoss()
    losses = {}
    for lam in lambdas:
        values = [float(loss_fn(l1_wavelet(item, lam, iterations), item)) for item in validation]
        losses[float(lam)] = float(np.mean(values))
    return LambdaChoice(min(losses, key=losses.__getitem__), losses)
