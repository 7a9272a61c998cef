"""Tiny unrolled networks and synthetic batches for the strategy and memory tests.

The strategy tests depend only on :func:`make_net` and :func:`make_batch`; to run them on the
project's real models, extend :func:`make_net`.

- :class:`ToyIteration`: a PGD-like step ``x - a A^H (A x - y)`` (image state) or a VarNet-like
  k-space step ``k - a M (k - y)`` (k-space state), followed by a small complex -> 2-channel conv
  residual (Conv2d for 2D and cine, whose time axis is folded into the batch; Conv3d for 3D).
- :class:`ToyPrologue`: rescales each coil map by a learned real gain (a stand-in for VarNet's
  learned sensitivity maps), so the problem carries tensors that require grad.
"""

from __future__ import annotations

import torch
from torch import nn

from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.models.unrolled import Iteration, Problem, UnrolledNet
from gleam_mri.training.losses import build_loss
from gleam_mri.training.strategies import build_strategy

KINDS = ("2d", "3d", "cine")
# image shape D, Fourier-encoded axes, conv rank, batch size, coils
GEOMETRY = {
    "2d": ((12, 10), 2, 2, 2, 3),
    "3d": ((4, 8, 8), 3, 3, 1, 2),
    "cine": ((3, 8, 8), 2, 2, 2, 2),
}


class ToyIteration(Iteration):
    """Gradient (or k-space) data-consistency step plus a conv residual ``(B, *D)`` complex."""

    def __init__(self, conv_ndim: int, channels: int = 4, state: str = "image") -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[conv_ndim]
        self.conv_ndim, self.state = conv_ndim, state
        self.step = nn.Parameter(torch.tensor(0.5))
        self.conv1 = conv(2, channels, 3, padding=1)
        self.conv2 = conv(channels, 2, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight.mul_(0.3)

    def cnn(self, x: torch.Tensor) -> torch.Tensor:
        """Residual of the conv net on complex ``x`` ``(B, *D)``; leading axes folded."""
        spatial = x.shape[x.ndim - self.conv_ndim :]
        z = torch.view_as_real(x.reshape(-1, *spatial)).movedim(-1, 1)
        z = self.conv2(torch.relu(self.conv1(z)))
        z = z.movedim(1, -1).to(x.real.dtype).contiguous()  # bf16 under autocast -> back
        return torch.view_as_complex(z).reshape(x.shape)

    def forward(self, state: torch.Tensor, problem: Problem) -> torch.Tensor:
        op = problem.op
        if self.state == "image":
            x = state - self.step * op.adjoint(op.forward(state) - problem.y)
            return x + self.cnn(x)
        full = op.with_mask(None)
        k = state - self.step * op.apply_mask(state - problem.y)
        return k + full.forward(self.cnn(full.adjoint(k)))


class ToyPrologue(nn.Module):
    """``Problem -> Problem`` with each coil map scaled by a learned real gain ``(C,)``."""

    def __init__(self, coils: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(1.0 + 0.1 * torch.linspace(-1.0, 1.0, coils))

    def forward(self, problem: Problem) -> Problem:
        maps = problem.maps
        gain = self.gain.to(maps.real.dtype).view(1, -1, *([1] * (maps.ndim - 2)))
        return problem.with_maps(maps * gain)


def make_net(
    kind: str,
    depth: int,
    invertible: bool = False,
    prologue: bool = False,
    state: str = "image",
    channels: int = 4,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> UnrolledNet:
    """A ``depth``-iteration toy network for ``kind`` data (separate weights per iteration)."""
    _, _, conv_ndim, _, coils = GEOMETRY[kind]
    torch.manual_seed(seed)
    iterations = [ToyIteration(conv_ndim, channels, state) for _ in range(depth)]
    pro = ToyPrologue(coils) if prologue else None
    net = UnrolledNet(iterations, state=state, prologue=pro, invertible=invertible)
    return net.to(dtype)


def make_batch(
    kind: str,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    shape: tuple[int, ...] | None = None,
    crop: bool = True,
) -> MRIBatch:
    """Synthetic batch: smooth complex image, smooth maps, random lines, cropped 2D target."""
    d, fft_ndim, _, b, c = GEOMETRY[kind]
    d = tuple(shape) if shape is not None else d
    gen = torch.Generator().manual_seed(seed)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64

    def smooth(*lead: int) -> torch.Tensor:
        z = torch.randn(*lead, *d, dtype=torch.complex128, generator=gen)
        grid = torch.meshgrid(
            *[torch.linspace(-1, 1, n, dtype=torch.float64) for n in d[-2:]], indexing="ij"
        )
        lowpass = torch.exp(-8.0 * sum(g**2 for g in grid))
        return torch.fft.ifft2(torch.fft.ifftshift(z * lowpass, dim=(-2, -1)))

    image = smooth(b)
    image = image / image.abs().amax()
    maps = smooth(b, c) + 0.5
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask_shape = [b, 1, *d]
    mask_shape[-2] = 1  # readout axis: never undersampled
    mask = (torch.rand(mask_shape, generator=gen, dtype=torch.float64) < 0.4).to(torch.float64)
    mask[..., d[-1] // 2 - 1 : d[-1] // 2 + 2] = 1.0  # calibration lines
    kspace = mask * fftnc(maps * image.unsqueeze(1), fft_ndim)
    target = image.abs()
    if crop and kind == "2d":
        target = target[..., 1:-1, 1:-1]
    return MRIBatch(
        kspace=kspace.to(cdtype),
        mask=mask.to(dtype),
        maps=maps.to(cdtype),
        target=target.to(dtype),
        scale=torch.ones(b, dtype=torch.float32),
        fft_ndim=fft_ndim,
    )


def gradients(name: str, net, batch, **kwargs) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of one forward/backward of strategy ``name`` (MSE loss, no
    optimizer step)."""
    strategy = build_strategy(name, net, build_loss("mse"), **kwargs)
    loss = strategy.forward_backward(batch)["loss"]
    return loss, {n: p.grad.clone() for n, p in net.named_parameters()}
