"""Outside baseline: fastMRI's own E2E-VarNet (``fastmri.models.VarNet``), trained one step.

Two variants at the workload's shapes, for comparison with gleam-mri's VarNet:

- ``fastmri-e2e``: ordinary backpropagation through the whole network.
- ``fastmri-checkpoint``: every cascade call wrapped in ``torch.utils.checkpoint``
  (``use_reentrant=False``) by replacing each ``VarNetBlock`` with a thin wrapper module; the
  fastmri package itself is not modified.

fastMRI's VarNet takes real-view k-space ``(B, C, H, W, 2)`` float32 and a bool mask
``(B, 1, 1, W, 1)`` and returns the RSS magnitude ``(B, H, W)``; the loss is the L1 distance of
its centre crop to the batch's target (the ``l1`` loss of the gleam strategies). Sizes map from
the :class:`~gleam_mri.config.ModelConfig`: ``features -> chans``, ``levels -> pools``,
``sens_features -> sens_chans``, ``sens_levels -> sens_pools``. ``fastmri`` is a benchmark-only
dependency (``pip install --no-deps fastmri``): :func:`fastmri_unavailable` says why it cannot be
used, and the harness then records the baseline as skipped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gleam_mri.config import ModelConfig
from gleam_mri.crop import center_crop
from gleam_mri.data.batch import MRIBatch
from gleam_mri.devices import bf16_autocast

VARIANTS = ("fastmri-e2e", "fastmri-checkpoint")


def fastmri_unavailable() -> str | None:
    """``None`` when ``fastmri.models.VarNet`` imports, else the reason (for a skip message)."""
    try:
        from fastmri.models import VarNet  # noqa: F401
    except Exception as err:  # ImportError, or a missing dependency of fastmri
        return (
            f"fastMRI baseline skipped: cannot import fastmri.models.VarNet ({err}); install it "
            "with `pip install --no-deps fastmri==0.3.0`"
        )
    return None


class CheckpointedCascade(nn.Module):
    """A fastMRI cascade whose call is recomputed in backward (``torch.utils.checkpoint``)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.block, *args, use_reentrant=False)


def build_fastmri_varnet(cfg: ModelConfig, depth: int, checkpointed: bool = False) -> nn.Module:
    """``fastmri.models.VarNet`` with ``depth`` cascades and the config's sizes."""
    reason = fastmri_unavailable()
    if reason is not None:
        raise ImportError(reason)
    from fastmri.models import VarNet

    model = VarNet(
        num_cascades=depth,
        sens_chans=cfg.sens_features,
        sens_pools=cfg.sens_levels,
        chans=cfg.features,
        pools=cfg.levels,
    )
    if checkpointed:
        model.cascades = nn.ModuleList([CheckpointedCascade(c) for c in model.cascades])
    return model


def cnn_modules(model: nn.Module) -> list[nn.Module]:
    """The U-Nets of a fastMRI VarNet (sensitivity model first, then one per cascade)."""
    return [m for m in model.modules() if type(m).__name__ == "Unet"]


def fastmri_inputs(batch: MRIBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked_kspace (B, C, H, W, 2) float, mask (B, 1, 1, W, 1) bool)`` of a 2D batch."""
    if batch.fft_ndim != 2 or batch.kspace.ndim != 4:
        raise ValueError(
            "fastMRI's VarNet is 2D only: it needs k-space (B, C, H, W), got "
            f"{tuple(batch.kspace.shape)} with fft_ndim={batch.fft_ndim}"
        )
    if batch.mask.shape[-2] != 1:
        raise ValueError(f"fastMRI needs a line mask (B, 1, 1, W), got {tuple(batch.mask.shape)}")
    kspace = torch.view_as_real(batch.kspace).contiguous()
    mask = (batch.mask != 0).reshape(batch.mask.shape[0], 1, 1, batch.mask.shape[-1], 1)
    return kspace, mask


class FastMRIVarNetStep:
    """One Adam training step of a fastMRI VarNet on a fixed batch.

    Args:
        model: from :func:`build_fastmri_varnet`, already on the batch's device.
        batch: a 2D :class:`MRIBatch` with a target.
        amp: forward under bf16 autocast (loss in float32).
        lr, optimizer_kwargs: ``torch.optim.Adam`` arguments.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: MRIBatch,
        amp: bool = False,
        lr: float = 1e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch.target is None:
            raise ValueError("the fastMRI baseline needs a batch with a target")
        self.model = model
        self.batch = batch
        self.kspace, self.mask = fastmri_inputs(batch)
        self.amp = amp
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, **(optimizer_kwargs or {}))

    def forward(self) -> torch.Tensor:
        """Magnitude ``(B, H, W)`` float32."""
        with bf16_autocast(self.kspace.device, self.amp):
            return self.model(self.kspace, self.mask).float()

    def step(self) -> float:
        """Zero grads, forward, L1 loss on the centre crop, backward, Adam step; the loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        target = self.batch.target
        image = center_crop(self.forward(), target.shape[-2:])
        loss = F.l1_loss(image, target)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
