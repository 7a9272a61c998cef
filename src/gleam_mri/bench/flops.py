"""Analytic convolution FLOPs, counted with forward hooks on the convolution modules.

Convention (the same as ``torch.utils.flop_counter`` for convolutions):

- One multiply-add is 2 FLOPs. Only convolutions are counted: bias additions, normalisations,
  activations, FFTs, coil operators and the optimizer are not.
- ``ConvNd`` (any stride, padding, dilation, groups):
  ``2 * N * C_out * prod(output spatial) * (C_in / groups) * prod(kernel)``.
- ``ConvTransposeNd``: ``2 * N * C_in * prod(input spatial) * (C_out / groups) * prod(kernel)``.
- A training step counts forward + backward = ``3 x`` the forward FLOPs: the backward of a
  convolution computes the gradient of its input and of its weight, each costing as many FLOPs
  as the forward (:data:`TRAIN_FACTOR`).
- The *useful* FLOPs of a step are ``3 x`` the forward FLOPs of one forward pass of the network
  being trained. Work a strategy repeats (checkpointing's recomputed forward, the invertible
  network's inverse and recomputed forward) is overhead, not useful work: the harness counts it
  separately (the forward FLOPs actually executed during a step) and never in TFLOP/s.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

TRAIN_FACTOR = 3  # forward + backward (grad input + grad weight), in units of the forward


@dataclass(frozen=True)
class ConvCall:
    """A convolution configuration applied to one input shape (hashable: a key of counts)."""

    module: str  # class name, e.g. "Conv2d", "ConvTranspose3d"
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    transposed: bool
    output_padding: tuple[int, ...]
    input_shape: tuple[int, ...]  # (N, C_in, *spatial)
    output_shape: tuple[int, ...]  # (N, C_out, *spatial)

    @property
    def conv_ndim(self) -> int:
        return len(self.kernel_size)

    @property
    def flops(self) -> int:
        """Forward FLOPs of one call (module docstring's formula)."""
        return conv_flops(self.input_shape, self.output_shape, self)

    def describe(self) -> str:
        """Short label, e.g. ``Conv2d 64->64 k3x3 on 1x64x320x320``."""
        kernel = "x".join(map(str, self.kernel_size))
        shape = "x".join(map(str, self.input_shape))
        stride = "" if set(self.stride) == {1} else f" s{'x'.join(map(str, self.stride))}"
        return f"{self.module} {self.in_channels}->{self.out_channels} k{kernel}{stride} on {shape}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flops": self.flops, "label": self.describe()}


def conv_flops(
    input_shape: tuple[int, ...], output_shape: tuple[int, ...], conv: _ConvNd | ConvCall
) -> int:
    """Forward FLOPs of a convolution ``conv`` mapping ``input_shape`` to ``output_shape``.

    Shapes are ``(N, C, *spatial)``; unbatched inputs ``(C, *spatial)`` count as ``N = 1``.
    """
    ndim = len(conv.kernel_size)
    if len(input_shape) == ndim + 1:
        input_shape, output_shape = (1, *input_shape), (1, *output_shape)
    if len(input_shape) != ndim + 2 or len(output_shape) != ndim + 2:
        raise ValueError(
            f"a {ndim}D convolution needs (N, C, *{ndim} axes) shapes, got {input_shape} -> "
            f"{output_shape}"
        )
    per_position = (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
    batch = input_shape[0]
    if conv.transposed:  # every input position scatters a kernel into each output channel
        per_position = (conv.out_channels // conv.groups) * math.prod(conv.kernel_size)
        return 2 * batch * conv.in_channels * math.prod(input_shape[2:]) * per_position
    return 2 * batch * conv.out_channels * math.prod(output_shape[2:]) * per_position


def conv_call(module: _ConvNd, input_shape: torch.Size, output_shape: torch.Size) -> ConvCall:
    """The :class:`ConvCall` of ``module`` on ``input_shape`` (batched as ``(N, C, ...)``)."""
    ndim = len(module.kernel_size)
    if len(input_shape) == ndim + 1:
        input_shape, output_shape = (1, *input_shape), (1, *output_shape)
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    return ConvCall(
        module=type(module).__name__,
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        kernel_size=tuple(module.kernel_size),
        stride=tuple(module.stride),
        padding=padding,
        dilation=tuple(module.dilation),
        groups=module.groups,
        bias=module.bias is not None,
        transposed=bool(module.transposed),
        output_padding=tuple(module.output_padding),
        input_shape=tuple(int(s) for s in input_shape),
        output_shape=tuple(int(s) for s in output_shape),
    )


class ConvFlopCounter:
    """Context manager counting the forward convolution calls of some modules.

    Every convolution module inside ``modules`` (each counted once, however often it appears)
    gets a forward hook while the context is active; calls made under ``torch.no_grad``,
    inside checkpoint recomputation or an inverse pass are all seen.

    Attributes:
        calls: ``Counter`` of :class:`ConvCall` -> number of calls.

    Usage::

        with ConvFlopCounter(net) as counter:
            net(problem)
        counter.forward_flops, counter.train_flops
    """

    def __init__(self, *modules: nn.Module) -> None:
        if not modules or not all(isinstance(m, nn.Module) for m in modules):
            raise TypeError("ConvFlopCounter needs one or more torch.nn.Module arguments")
        self.modules = modules
        self.calls: Counter[ConvCall] = Counter()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        x = args[0]
        self.calls[conv_call(module, x.shape, output.shape)] += 1

    def __enter__(self) -> ConvFlopCounter:
        if self._handles:
            raise RuntimeError("ConvFlopCounter is already active")
        seen: set[int] = set()
        for root in self.modules:
            for m in root.modules():
                if isinstance(m, _ConvNd) and id(m) not in seen:
                    seen.add(id(m))
                    self._handles.append(m.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def forward_flops(self) -> int:
        """Forward convolution FLOPs of every call seen."""
        return sum(call.flops * n for call, n in self.calls.items())

    @property
    def train_flops(self) -> int:
        """``TRAIN_FACTOR x forward_flops``: what these calls cost in a training step."""
        return TRAIN_FACTOR * self.forward_flops

    @property
    def n_calls(self) -> int:
        return sum(self.calls.values())

    def table(self) -> list[dict[str, Any]]:
        """One dict per distinct call, largest total FLOPs first: the call's fields, ``count``."""
        rows = [{**call.as_dict(), "count": n} for call, n in self.calls.items()]
        return sorted(rows, key=lambda r: -r["flops"] * r["count"])
