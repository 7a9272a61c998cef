"""Linear operators of multi-coil MRI.

Tensor conventions (used throughout gleam-mri)
------------------------------------------------
- Image ``x``: complex ``(B, *D)``.
- k-space ``y``: complex ``(B, C, *D)``; ``B`` batch, ``C`` coils.
- Coil maps: complex ``(B, C, *D)`` or broadcastable to it.
- Mask: real or bool, broadcastable to ``(B, C, *D)``.
- The last ``fft_ndim`` axes of ``D`` are Fourier encoded: ``D=(H, W)`` with ``fft_ndim=2`` in 2D,
  ``D=(Z, H, W)`` with ``fft_ndim=3`` in 3D, and ``D=(T, H, W)`` with ``fft_ndim=2`` for cine,
  where the leading time axis is carried along and the mask differs per frame.
- Axis ``-2`` (``H``) is the readout (frequency encoding) as in fastMRI: masks never vary along it;
  they vary along ``W`` (phase encoding), and ``Z`` (3D) or ``T`` (cine).
- FFTs are centred and orthonormal (:mod:`gleam_mri.fft`).

Operators are immutable: they are built once per batch and nothing is stored on them during a
forward pass, so that checkpoint recomputation and pipeline stages can rebuild or reuse them freely.
Shapes and types are checked once, when the operator is built; ``forward``, ``adjoint`` and
``gram`` (called in every unrolled iteration) check nothing.
"""

from __future__ import annotations

import torch

from gleam_mri.fft import centred_fft


class LinearOperator:
    """A linear map with ``forward``, ``adjoint``, ``gram`` and the adjoint view ``.H``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint operator."""
        raise NotImplementedError

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H A``."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def H(self) -> LinearOperator:
        """The adjoint operator, as an operator."""
        return _Adjoint(self)


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator) -> None:
        object.__setattr__(self, "_op", op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op.adjoint(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._op.forward(y)

    @property
    def H(self) -> LinearOperator:
        return self._op

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("operators are immutable")


class SenseOp(LinearOperator):
    """Multi-coil Cartesian SENSE operator ``A = M F S``.

    Args:
        maps: complex coil sensitivities ``(B, C, *D)`` (or broadcastable).
        mask: real or bool, broadcastable to ``(B, C, *D)``; ``None`` means fully sampled.
        fft_ndim: number of trailing axes of ``D`` that are Fourier encoded (2 or 3).

    ``forward``: image ``(B, *D)`` -> k-space ``(B, C, *D)``; ``adjoint``: the reverse. The
    constructor checks the maps, mask and ``fft_ndim``; the methods trust their inputs' shapes.
    """

    def __init__(
        self, maps: torch.Tensor, mask: torch.Tensor | None = None, fft_ndim: int = 2
    ) -> None:
        fft_ndim = int(fft_ndim)
        if fft_ndim < 1:
            raise ValueError(f"fft_ndim must be >= 1, got {fft_ndim}")
        if not torch.is_complex(maps):
            raise TypeError(f"coil maps must be complex, got {maps.dtype}")
        if maps.ndim < fft_ndim + 2:
            raise ValueError(
                f"coil maps must have shape (B, C, *D) with at least {fft_ndim} encoded axes, "
                f"got {tuple(maps.shape)}"
            )
        if mask is not None:
            if torch.is_complex(mask):
                raise TypeError("the mask must be real or bool, not complex")
            if mask.ndim > maps.ndim:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} has more axes than the maps "
                    f"{tuple(maps.shape)}"
                )
            try:
                torch.broadcast_shapes(mask.shape, maps.shape)
            except RuntimeError as err:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not broadcast to k-space "
                    f"{tuple(maps.shape)}"
                ) from err
            mask = mask.to(device=maps.device, dtype=maps.real.dtype)
        object.__setattr__(self, "maps", maps)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "fft_ndim", fft_ndim)
        object.__setattr__(self, "_dims", tuple(range(-fft_ndim, 0)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SenseOp is immutable: build a new operator per batch")

    def apply_mask(self, y: torch.Tensor) -> torch.Tensor:
        """Multiply k-space ``(B, C, *D)`` by the mask (identity when fully sampled)."""
        return y if self.mask is None else y * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, *D)`` -> masked multi-coil k-space ``(B, C, *D)``."""
        return self.apply_mask(centred_fft(self.maps * x.unsqueeze(1), self._dims))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``(B, C, *D)`` -> coil-combined image ``(B, *D)``."""
        coil_images = centred_fft(self.apply_mask(y), self._dims, inverse=True)
        return (self.maps.conj() * coil_images).sum(dim=1)

    def with_mask(self, mask: torch.Tensor | None) -> SenseOp:
        """A new operator with the same maps and another mask."""
        return SenseOp(self.maps, mask, self.fft_ndim)
