"""``gleam adapt`` never below compressed sensing: the network and l1-wavelet CS judged alike.

After training, the network (its kept weights) and CS (:mod:`gleam_mri.recon.cs`, its weight
chosen on the same held-out sets) are scored on the scan's validation set ``Gamma``: each is fed
the training pool of up to :data:`ITEMS` validation items and judged by how well its image
predicts the held-out samples (SSDU's normalised l1 + l2). The lower loss wins, and the scan is
reconstructed with it from every measured sample, so the worst case is CS. Neither sees a
reference. 3D slab training is not compared yet (CS over whole volumes is not wired in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gleam_mri.adapt.scan import Scan
from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.datasets import evenly_spread
from gleam_mri.inference import output_crop
from gleam_mri.recon.cs import LambdaChoice, choose_lambda, l1_wavelet
from gleam_mri.selfsup.loss import KspaceLoss
from gleam_mri.training.strategies import Strategy

__all__ = ["ITEMS", "Comparison", "compare_with_cs", "cs_volume"]

ITEMS = 4  # validation items CS and the network are compared on (spread over the scan)


@dataclass
class Comparison:
    """Which reconstruction ``gleam adapt`` keeps (``"network"`` or ``"cs"``) and why: both
    held-out losses on the same items, and CS's weights tried."""

    kept: str
    network_loss: float
    cs: LambdaChoice

    def describe(self) -> str:
        """One line for the user."""
        cs = f"CS (l1-wavelet, weight {self.cs.lam:g}) {self.cs.loss:.4g}"
        if self.kept == "cs":
            return f"kept CS: held-out loss {cs} against the network's {self.network_loss:.4g}"
        return f"kept the network: held-out loss {self.network_loss:.4g} against {cs}"

    def to_dict(self) -> dict:
        """The ``adapt.json`` record."""
        return {
            "kept": self.kept,
            "network_heldout_loss": self.network_loss,
            "cs_lambda": self.cs.lam,
            "cs_heldout_loss": self.cs.loss,
            "cs_losses": {f"{lam:g}": loss for lam, loss in self.cs.losses.items()},
        }


@torch.no_grad()
def compare_with_cs(
    strategy: Strategy, validation: Sequence[MRIBatch], device: torch.device
) -> Comparison:
    """Score the network (its current weights) and CS on up to :data:`ITEMS` of ``validation``
    (items fed their pool, holding ``Gamma`` out); the lower held-out loss is kept."""
    items = [validation[i] for i in evenly_spread(len(validation), ITEMS)]
    loss_fn = KspaceLoss()
    losses = [float(loss_fn(strategy.reconstruct(b.to(device)), b.to(device))) for b in items]
    network = float(np.mean(losses))
    cs = choose_lambda(items)
    return Comparison("cs" if cs.loss < network else "network", network, cs)


def cs_volume(scan: Scan, lam: float) -> np.ndarray:
    """Magnitude of every item of a 2D or cine scan by CS from all its measured samples, at the
    file's scale: ``(S, H, W)`` or ``(S, T, H, W)``."""
    if scan.volumes is not None:
        raise ValueError("CS over whole 3D volumes is not wired into gleam adapt")
    out = []
    for item in scan.items:
        image = output_crop(l1_wavelet(item, lam).cpu(), item)
        out.append(item.denormalize(image.abs())[0].numpy())
    return np.stack(out).astype(np.float32)
