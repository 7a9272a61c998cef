"""``MRIBatch``: one mini-batch of multi-coil k-space with its mask, maps, target and scale."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gleam_mri.crop import center_crop
from gleam_mri.physics.operators import SenseOp


@dataclass
class MRIBatch:
    """A mini-batch in gleam-mri's tensor conventions (see :mod:`gleam_mri.physics.operators`).

    - ``kspace``: complex64 ``(B, C, *D)``, already masked and divided by ``scale``.
    - ``mask``: float32 0/1, ``(B, 1, *D)`` with size 1 allowed on any axis but ``B`` (e.g. the
      readout axis ``-2``), broadcastable to ``kspace``.
    - ``maps``: complex64 coil maps ``(B, C, *D)``.
    - ``target``: float32 magnitude ``(B, *Dt)`` divided by ``scale``, or ``None`` (no reference).
      ``Dt`` may be smaller than ``D`` on the last two axes (fastMRI's 320 x 320 targets); use
      :meth:`crop_to_target`.
    - ``scale``: float32 ``(B,)``, the divisor applied to ``kspace`` and ``target``.
    - ``fft_ndim``: 2 (2D, cine) or 3 (3D). ``meta``: one dict per item (file, slice, ...).
    - ``loss_kspace``, ``loss_mask``: self-supervised batches only (:mod:`gleam_mri.selfsup`):
      the measured samples held out from the network's input, complex64 ``(B, C, *D)`` (divided
      by ``scale``) and their float32 0/1 mask ``(B, 1, *D)``; ``None`` otherwise.

    The fields are checked once, where data enter (construction by readers, datasets, users);
    batches derived from valid ones (:meth:`to`, :meth:`pin_memory`, :meth:`shard`,
    :func:`collate_batches`) are built without checking again.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    target: torch.Tensor | None
    scale: torch.Tensor
    fft_ndim: int = 2
    meta: list[dict[str, Any]] = field(default_factory=list)
    loss_kspace: torch.Tensor | None = None
    loss_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        y = self.kspace
        if not torch.is_complex(y):
            raise TypeError(f"kspace must be complex, got {y.dtype}")
        if self.fft_ndim not in (2, 3):
            raise ValueError(f"fft_ndim must be 2 or 3, got {self.fft_ndim}")
        if y.ndim < self.fft_ndim + 2:
            raise ValueError(
                f"kspace must be (B, C, *D) with >= {self.fft_ndim} image axes, "
                f"got {tuple(y.shape)}"
            )
        if not torch.is_complex(self.maps) or self.maps.shape != y.shape:
            raise ValueError(
                f"maps must be complex with the kspace shape {tuple(y.shape)}, got "
                f"{self.maps.dtype} {tuple(self.maps.shape)}"
            )
        if torch.is_complex(self.mask) or self.mask.ndim != y.ndim or self.mask.shape[0] != len(y):
            raise ValueError(
                f"mask must be real (B, 1, *D) for kspace {tuple(y.shape)}, got "
                f"{self.mask.dtype} {tuple(self.mask.shape)}"
            )
        try:
            torch.broadcast_shapes(self.mask.shape, y.shape)
        except RuntimeError as err:
            raise ValueError(
                f"mask {tuple(self.mask.shape)} does not broadcast to kspace {tuple(y.shape)}"
            ) from err
        if self.target is not None and (
            self.target.ndim != y.ndim - 1 or self.target.shape[0] != len(y)
        ):
            raise ValueError(
                f"target must be (B, *Dt) for kspace {tuple(y.shape)}, got "
                f"{tuple(self.target.shape)}"
            )
        if self.scale.shape != (len(y),):
            raise ValueError(f"scale must have shape ({len(y)},), got {tuple(self.scale.shape)}")
        if self.meta and len(self.meta) != len(y):
            raise ValueError(f"meta has {len(self.meta)} entries for a batch of {len(y)}")
        if (self.loss_kspace is None) != (self.loss_mask is None):
            raise ValueError("loss_kspace and loss_mask are given together or not at all")
        if self.loss_kspace is not None and (
            self.loss_kspace.shape != y.shape or self.loss_mask.shape[:2] != (len(y), 1)
        ):
            raise ValueError(
                f"loss_kspace must be {tuple(y.shape)} and loss_mask (B, 1, *D), got "
                f"{tuple(self.loss_kspace.shape)} and {tuple(self.loss_mask.shape)}"
            )

    @property
    def batch_size(self) -> int:
        """Number of items ``B``."""
        return self.kspace.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MRIBatch:
        """A copy with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return self._map(move)

    def pin_memory(self) -> MRIBatch:
        """A copy in pinned memory (used by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: None if t is None else t.pin_memory())

    def _map(
        self,
        fn: Callable[[torch.Tensor | None], torch.Tensor | None],
        meta: list[dict[str, Any]] | None = None,
    ) -> MRIBatch:
        """``fn`` applied to every tensor; ``meta`` replaces a copy of the items' meta."""
        return _unchecked(
            kspace=fn(self.kspace),
            mask=fn(self.mask),
            maps=fn(self.maps),
            target=fn(self.target),
            scale=fn(self.scale),
            fft_ndim=self.fft_ndim,
            meta=[dict(m) for m in self.meta] if meta is None else meta,
            loss_kspace=fn(self.loss_kspace),
            loss_mask=fn(self.loss_mask),
        )

    def shard(self, index: int, count: int) -> MRIBatch:
        """Items ``[index * B / count, (index + 1) * B / count)``: replica ``index``'s equal share.

        Raises ``ValueError`` unless ``count`` divides ``B`` and ``0 <= index < count``.
        """
        if count < 1 or self.batch_size % count or not 0 <= index < count:
            raise ValueError(
                f"cannot take shard {index} of {count} from a batch of {self.batch_size} "
                "(the batch size must be a multiple of the shard count)"
            )
        size = self.batch_size // count
        part = slice(index * size, (index + 1) * size)
        return self._map(lambda t: None if t is None else t[part], meta=self.meta[part])

    def operator(self) -> SenseOp:
        """The SENSE operator ``A = M F S`` of this batch."""
        return SenseOp(self.maps, self.mask, self.fft_ndim)

    def _scale_as(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch_size:
            raise ValueError(f"expected a leading batch axis of {self.batch_size}, got {x.shape}")
        return self.scale.to(x.device).view(-1, *([1] * (x.ndim - 1)))

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: ``x * scale`` per item, for any ``(B, ...)`` tensor."""
        return x * self._scale_as(x)

    def crop_to_target(self, image: torch.Tensor) -> torch.Tensor:
        """Centre-crop an image ``(B, *D)`` on its last two axes to the target's size."""
        if self.target is None:
            raise ValueError("this batch has no target to crop to")
        if image.ndim != self.target.ndim:
            raise ValueError(
                f"image {tuple(image.shape)} and target {tuple(self.target.shape)} differ in rank"
            )
        return center_crop(image, self.target.shape[-2:])


def _unchecked(**fields: Any) -> MRIBatch:
    """An :class:`MRIBatch` of all ``fields`` without ``__post_init__``'s checks.

    Only for batches derived from valid ones (moved, pinned, sliced or concatenated), whose
    fields are valid by construction.
    """
    batch = object.__new__(MRIBatch)
    batch.__dict__.update(fields)
    return batch


def _cat(name: str, tensors: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(t.shape[1:]) for t in tensors}
    if len(shapes) > 1:
        if name != "mask":
            raise ValueError(f"cannot collate {name} of different shapes: {sorted(shapes)}")
        try:
            common = torch.broadcast_shapes(*[t.shape[1:] for t in tensors])
        except RuntimeError as err:
            raise ValueError(f"cannot collate masks of shapes {sorted(shapes)}") from err
        tensors = [t.expand(len(t), *common) for t in tensors]
    return torch.cat(tensors, dim=0)


def collate_batches(batches: Sequence[MRIBatch]) -> MRIBatch:
    """Concatenate batches along ``B`` (a ``DataLoader`` ``collate_fn``).

    Shapes must agree except on ``B``; masks of different broadcast shapes are expanded to their
    common shape. Raises ``ValueError`` on mismatched shapes, ``fft_ndim`` or target presence.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("cannot collate an empty list of batches")
    if any(not isinstance(b, MRIBatch) for b in batches):
        raise TypeError("collate_batches expects MRIBatch items")
    if len({b.fft_ndim for b in batches}) > 1:
        raise ValueError("cannot collate batches with different fft_ndim")
    has_target = {b.target is not None for b in batches}
    if len(has_target) > 1:
        raise ValueError("cannot collate batches where only some items have a target")
    held_out = {b.loss_kspace is not None for b in batches}
    if len(held_out) > 1:
        raise ValueError("cannot collate batches where only some items hold out k-space")
    size, meta = sum(b.batch_size for b in batches), [m for b in batches for m in b.meta]
    if meta and len(meta) != size:
        raise ValueError(f"meta has {len(meta)} entries for a batch of {size}")
    return _unchecked(
        kspace=_cat("kspace", [b.kspace for b in batches]),
        mask=_cat("mask", [b.mask for b in batches]),
        maps=_cat("maps", [b.maps for b in batches]),
        target=_cat("target", [b.target for b in batches]) if True in has_target else None,
        scale=torch.cat([b.scale for b in batches]),
        fft_ndim=batches[0].fft_ndim,
        meta=meta,
        loss_kspace=_cat("kspace", [b.loss_kspace for b in batches]) if True in held_out else None,
        loss_mask=_cat("mask", [b.loss_mask for b in batches]) if True in held_out else None,
    )
