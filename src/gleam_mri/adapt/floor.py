"""``gleam adapt`` never below compressed sensing: the network, l1-wavelet CS and their blends
judged alike.

After training, CS's weight is chosen on the scan's held-out sets (:func:`choose_cs_weight`), and
the network (its kept weights), CS (:mod:`gleam_mri.recon.cs`) and their blends (:data:`SHARES`
of the network, the rest CS's) are scored on the scan's validation set ``Gamma``: each is fed the
training pool of up to :data:`ITEMS` validation items and judged by how well its image predicts
the held-out samples (SSDU's normalised l1 + l2). The lowest loss wins, and the scan is
reconstructed with it from every measured sample, so the worst case is CS. Their errors differ
(the network's texture, CS's blocky smoothing), so a blend can beat both. Nothing sees a
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

__all__ = [
    "ITEMS",
    "SHARES",
    "Comparison",
    "blend",
    "compare_with_cs",
    "cs_images",
    "volume_of",
]

ITEMS = 4  # validation items CS and the network are compared on (spread over the scan)
# shares of the network in the image written, the rest CS's: 0 is CS, 1 the network
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Comparison:
    """What ``gleam adapt`` writes and why: the share of the network in the image (the rest is
    CS's; 0: CS alone, 1: the network alone) with the lowest held-out loss, the loss of every
    share tried on the same items, and CS's weights tried."""

    share: float
    losses: dict[float, float]  # held-out loss by share of the network
    cs: LambdaChoice

    @property
    def kept(self) -> str:
        """``"cs"``, ``"network"`` or ``"blend"``."""
        return {0.0: "cs", 1.0: "network"}.get(self.share, "blend")

    @property
    def network_loss(self) -> float | None:
        """The held-out loss of the network alone (``None``: no network was scored)."""
        return self.losses.get(1.0)

    def describe(self) -> str:
        """One line for the user."""
        if 1.0 not in self.losses:  # no network: CS alone
            return f"kept {self.cs.describe()}"
        cs = f"CS (l1-wavelet, weight {self.cs.lam:g})"
        what = {"cs": cs, "network": "the network"}.get(
            self.kept, f"a blend, {self.share:.0%} network + {1 - self.share:.0%} {cs}"
        )
        tried = ", ".join(f"{share:.0%}: {loss:.4g}" for share, loss in self.losses.items())
        return (
            f"kept {what}: held-out loss {self.losses[self.share]:.4g} "
            f"(by share of the network, 0% being CS: {tried})"
        )

    def to_dict(self) -> dict:
        """The ``adapt.json`` record."""
        return {
            "kept": self.kept,
            "network_share": self.share,
            "heldout_loss_by_share": {f"{k:g}": v for k, v in self.losses.items()},
            "network_heldout_loss": self.network_loss,
            "cs_lambda": self.cs.lam,
            "cs_heldout_loss": self.losses.get(0.0),
            "cs_losses": {f"{lam:g}": loss for lam, loss in self.cs.losses.items()},
        }


def comparison_items(validation: Sequence[MRIBatch]) -> list[MRIBatch]:
    """The up to :data:`ITEMS` validation items (spread over the scan) CS's weight is chosen on
    and the network is compared with CS on."""
    return [validation[i] for i in evenly_spread(len(validation), ITEMS)]


def choose_cs_weight(validation: Sequence[MRIBatch]) -> LambdaChoice:
    """CS's l1 weight, chosen on the :func:`comparison_items` of ``validation`` (items fed their
    pool, holding ``Gamma`` out)."""
    return choose_lambda(comparison_items(validation))


def blend(network: torch.Tensor, cs: torch.Tensor, share: float) -> torch.Tensor:
    """``share`` of the network's image and the rest of CS's (complex, same shape): their
    magnitudes blended, with the phase of their complex blend (a complex average would shrink
    the magnitude wherever the two phases differ)."""
    if share == 1.0:
        return network
    if share == 0.0:
        return cs
    cs = cs.to(network.device)
    magnitude = share * network.abs() + (1 - share) * cs.abs()
    return torch.polar(magnitude, torch.angle(share * network + (1 - share) * cs))


@torch.no_grad()
def compare_with_cs(
    strategy: Strategy, validation: Sequence[MRIBatch], cs: LambdaChoice, device: torch.device
) -> Comparison:
    """Score every blend of :data:`SHARES` of the network (its current weights) and CS (weight
    ``cs.lam``, from :func:`choose_cs_weight`) on the :func:`comparison_items` of ``validation``
    (fed their pool, ``Gamma`` held out); the share with the lowest held-out loss is kept (its
    loss equals CS's only when it is CS, so the pick is never below CS by this measure)."""
    loss_fn = KspaceLoss()
    items = [b.to(device) for b in comparison_items(validation)]
    networks = [strategy.reconstruct(b) for b in items]
    starts = cs_images(items, cs.lam)
    losses = {}
    for share in SHARES:
        values = [
            float(loss_fn(blend(n, c, share), b))
            for n, c, b in zip(networks, starts, items, strict=True)
        ]
        losses[share] = float(np.mean(values))
    return Comparison(min(losses, key=losses.__getitem__), losses, cs)


def cs_images(items: Sequence[MRIBatch], lam: float) -> list[torch.Tensor]:
    """The CS image ``(1, *D)`` of every B=1 item from the samples it holds (its ``mask``)."""
    return [l1_wavelet(item, lam) for item in items]


def volume_of(scan: Scan, images: Sequence[torch.Tensor]) -> np.ndarray:
    """Magnitude of ``images`` (one complex ``(1, *D)`` per item of a 2D or cine scan), cropped
    as the outputs are, at the file's scale: ``(S, H, W)`` or ``(S, T, H, W)``."""
    if scan.volumes is not None:
        raise ValueError("CS over whole 3D volumes is not wired into gleam adapt")
    out = []
    for item, image in zip(scan.items, images, strict=True):
        image = output_crop(image.cpu(), item)
        out.append(item.denormalize(image.abs())[0].numpy())
    return np.stack(out).astype(np.float32)
