"""Compressed sensing: l1-wavelet regularised SENSE, its weight chosen per scan on held-out k-space.

    x = argmin_x 1/2 ||M (F S x - y)||_2^2 + lam ||W x||_1

the problem of BART's ``pics -R W:...``, solved as BART solves it: sigpy's accelerated proximal
gradient (FISTA, :data:`ITERATIONS` iterations) on sigpy's SENSE operator, with Daubechies-2
wavelets cycle-spun (a new random circular shift of the image at every iteration) and the
coarsest band left unthresholded; 2D and 3D over every encoded axis, cine frame by frame.
sigpy's own ``L1WaveletRecon`` (Daubechies-4, one fixed grid, every band thresholded) was 0.6-0.8
dB below BART at each one's best weight on the real brain (``benchmarks/cs_solver.py``). Items are
normalised as the data sets normalise them (``max |A^H y| = 1``), so one grid of weights fits
every scan.

No reference is needed to choose ``lam``: each item's measured samples are split once into a pool
and a held-out set (:data:`VALIDATION_FRACTION` of them, whole lines drawn uniformly: the
held-out sets of ``gleam adapt``), CS runs on the pool at every weight of :data:`LAMBDAS`, and the
weight whose image best predicts the held-out samples (SSDU's normalised l1 + l2,
:class:`~gleam_mri.selfsup.loss.KspaceLoss`, averaged over the items) is chosen
(:func:`choose_lambda`). The final image then uses every measured sample. A scan with too few
measured lines to hold any out gets :data:`DEFAULT_LAMBDA`, and says so (:func:`choose_lambda_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.selfsup.data import measured_mask, with_split
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.selfsup.split import HELD_OUT_LINES, SplitError, Splitter, validation_seed

__all__ = [
    "DEFAULT_LAMBDA",
    "ITERATIONS",
    "LAMBDAS",
    "LambdaChoice",
    "choose_lambda",
    "choose_lambda_for",
    "heldout_items",
    "l1_wavelet",
]

LAMBDAS = (1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2)  # for items normalised to max |A^H y| = 1
# the weight of a scan with too few lines to choose one on (BART pics' weight of RESULTS's tables)
DEFAULT_LAMBDA = 1e-2
ITERATIONS = 100
WAVELET = "db2"  # BART's Daubechies wavelet (4 taps), orthonormal with periodic extension
VALIDATION_FRACTION = 0.2
SPLITTER = Splitter(**HELD_OUT_LINES)  # gleam adapt's held-out sets


def _cycle_spun_wavelet_prox(shape: tuple[int, ...], lam: float, seed: int):
    """``prox(alpha, x)`` of ``alpha lam ||W x||_1`` (the ``proxg`` of sigpy's gradient method),
    ``W`` an orthonormal Daubechies transform (:data:`WAVELET`, periodic, as many levels as the
    smallest axis allows) of the image circularly shifted by a random offset drawn anew at each
    call (BART's cycle spinning: the blocky artefacts of one
    fixed wavelet grid average out). The coarsest band is not thresholded.
    ``seed`` fixes the offsets: the result depends on the inputs alone."""
    import pywt

    levels = max(1, pywt.dwt_max_level(min(shape), WAVELET))
    block = 2**levels
    pad = [(0, (-n) % block) for n in shape]  # periodic levels need multiples of 2^levels
    rng = np.random.default_rng(seed)

    def soft(c: np.ndarray, t: float) -> np.ndarray:
        magnitude = np.abs(c)
        return c * (np.maximum(magnitude - t, 0) / np.maximum(magnitude, 1e-30))

    def prox(alpha: float, x: np.ndarray) -> np.ndarray:
        offset = tuple(int(o) for o in rng.integers(0, block, len(shape)))
        axes = tuple(range(len(shape)))
        shifted = np.pad(np.roll(x, offset, axis=axes), pad)
        bands = pywt.wavedecn(shifted, WAVELET, mode="periodization", level=levels)
        bands = [bands[0]] + [{k: soft(v, alpha * lam) for k, v in d.items()} for d in bands[1:]]
        out = pywt.waverecn(bands, WAVELET, mode="periodization")
        out = out[tuple(slice(0, n) for n in shape)]
        return np.roll(out, tuple(-o for o in offset), axis=axes).astype(x.dtype)

    return prox


def _solve(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray, lam: float, iters: int):
    """One l1-wavelet SENSE problem: k-space and maps ``(C, *D)``, mask (0/1) broadcastable to
    them -> image ``(*D)``. sigpy's accelerated proximal gradient (FISTA) on its SENSE operator,
    with the cycle-spun wavelet prox. The step is ``1 / max_pixel sum_c |S_c|^2``, a bound on
    ``||A^H A||`` (a masked orthonormal FFT does not grow a norm), instead of sigpy's power
    iteration, which starts from numpy's global random state."""
    import sigpy as sp  # deferred: sigpy loads numba
    import sigpy.mri  # sp.mri

    bound = float((np.abs(maps) ** 2).sum(axis=0).max())
    step = 1.0 / bound if bound > 0 else 1.0
    sense = sp.mri.linop.Sense(maps, weights=mask)
    measured = mask * kspace  # sigpy's Sense applies sqrt(weights): 0/1 masks are unchanged

    def gradient(x: np.ndarray) -> np.ndarray:
        return sense.H(sense(x) - measured)

    x = sense.H(measured)
    prox = _cycle_spun_wavelet_prox(x.shape, lam, seed=0)
    solver = sp.alg.GradientMethod(gradient, x, step, prox, accelerate=True, max_iter=iters)
    while not solver.done():
        solver.update()
    return solver.x


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
    unchosen: str = ""  # why no weight was chosen on held-out samples ("": one was)

    @property
    def loss(self) -> float | None:
        """The held-out loss of the chosen weight (``None``: not chosen on held-out samples)."""
        return self.losses.get(self.lam)

    def describe(self) -> str:
        """One line for the user."""
        if self.unchosen:
            return f"CS l1 weight {self.lam:g}, the default ({self.unchosen})"
        tried = ", ".join(f"{lam:g}: {loss:.4g}" for lam, loss in self.losses.items())
        return f"CS l1 weight {self.lam:g} (held-out loss by weight: {tried})"


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


def choose_lambda_for(
    items: Sequence[MRIBatch], seed: int = 0, iterations: int = ITERATIONS
) -> LambdaChoice:
    """:func:`choose_lambda` on the :func:`heldout_items` of ``items`` (B=1 each); when their
    samples cannot be split (too few measured lines), :data:`DEFAULT_LAMBDA` and why."""
    try:
        validation = heldout_items(items, seed=seed)
    except SplitError as err:
        reason = f"too few measured lines to choose one on held-out lines: {err}"
        return LambdaChoice(DEFAULT_LAMBDA, unchosen=reason)
    return choose_lambda(validation, iterations=iterations)
