"""The floors a training step cannot beat: conv throughput, copy bandwidth, the CNN-only step.

- :func:`conv_throughput`: each distinct convolution of the model (configuration and input
  shape, from :class:`~gleam_mri.bench.flops.ConvFlopCounter`) rebuilt alone and timed forward
  and forward + backward, in bf16 with channels-last tensors on CUDA (the card's tensor-core
  path) and float32 contiguous on the CPU. ``conv_time`` turns the per-call times into the time
  the convolutions of one training step need at that throughput.
- :func:`copy_bandwidth`: a device-to-device copy of one buffer; bandwidth = (bytes read + bytes
  written) / time.
- :class:`CnnFloor`: the *CNN-only floor*: a training step of the network's CNNs alone (the
  real CNN modules of a network of the same depth, at the input shapes they see in a forward
  pass, the same precision and memory format) without physics, data consistency or strategy:
  each CNN call runs forward and backward on a fixed random input (which requires grad, so the
  backward computes both gradients, as inside the network), one call at a time, then one
  optimizer step over all CNN parameters. Its time is the unavoidable compute of a step; its
  memory that of a single CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from gleam_mri.bench.flops import TRAIN_FACTOR, ConvCall
from gleam_mri.bench.measure import free_memory, is_out_of_memory, time_calls
from gleam_mri.devices import bf16_autocast
from gleam_mri.models.regularizers import ResNet
from gleam_mri.models.unet import UNet

CNN_TYPES: tuple[type[nn.Module], ...] = (ResNet, UNet)

_CONV_CLASSES = {
    ("Conv", 1): nn.Conv1d,
    ("Conv", 2): nn.Conv2d,
    ("Conv", 3): nn.Conv3d,
    ("ConvTranspose", 1): nn.ConvTranspose1d,
    ("ConvTranspose", 2): nn.ConvTranspose2d,
    ("ConvTranspose", 3): nn.ConvTranspose3d,
}


def channels_last_format(ndim: int) -> torch.memory_format:
    """``channels_last`` for 4D tensors, ``channels_last_3d`` for 5D ones."""
    if ndim == 4:
        return torch.channels_last
    if ndim == 5:
        return torch.channels_last_3d
    raise ValueError(f"channels-last needs a 4D or 5D tensor, got {ndim}D")


def build_conv(call: ConvCall) -> nn.Module:
    """A fresh convolution module with the configuration of ``call``."""
    kind = "ConvTranspose" if call.transposed else "Conv"
    cls = _CONV_CLASSES[(kind, call.conv_ndim)]
    kwargs: dict[str, Any] = {
        "stride": call.stride,
        "padding": call.padding,
        "dilation": call.dilation,
        "groups": call.groups,
        "bias": call.bias,
    }
    if call.transposed:
        kwargs["output_padding"] = call.output_padding
    return cls(call.in_channels, call.out_channels, call.kernel_size, **kwargs)


def conv_precision(device: torch.device) -> tuple[torch.dtype, bool]:
    """dtype and channels-last of the throughput floor: bf16 + channels-last on CUDA, fp32 CPU."""
    return (torch.bfloat16, True) if device.type == "cuda" else (torch.float32, False)


def _time_conv(
    call: ConvCall, device: torch.device, warmup: int, repeats: int
) -> dict[str, float | None]:
    dtype, channels_last = conv_precision(device)
    conv = build_conv(call).to(device=device, dtype=dtype)
    x = torch.randn(call.input_shape, device=device, dtype=dtype)
    if channels_last:
        fmt = channels_last_format(x.ndim)
        conv = conv.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    x.requires_grad_(True)
    with torch.no_grad():
        grad_out = torch.randn_like(conv(x))

    def forward() -> None:
        with torch.no_grad():
            conv(x)

    def train() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(grad_out)

    fwd_s = time_calls(forward, device, warmup=warmup, repeats=repeats)["time_s"]
    train_s = time_calls(train, device, warmup=warmup, repeats=repeats)["time_s"]
    return {
        "forward_s": fwd_s,
        "train_s": train_s,
        "forward_tflops": call.flops / fwd_s / 1e12,
        "train_tflops": TRAIN_FACTOR * call.flops / train_s / 1e12,
    }


def conv_throughput(
    calls: Mapping[ConvCall, int], device: torch.device, *, warmup: int = 2, repeats: int = 5
) -> dict[ConvCall, dict[str, Any]]:
    """Time each distinct convolution of ``calls`` alone (forward, and forward + backward).

    ``calls`` maps a :class:`ConvCall` to its number of calls per forward pass (e.g.
    ``ConvFlopCounter.calls``). Returns, per call: ``label``, ``flops`` (forward, one call),
    ``forward_s``, ``train_s``, ``forward_tflops``, ``train_tflops``, ``dtype``,
    ``channels_last`` and ``status`` (``"ok"``, or ``"oom"`` with the times ``None``).
    """
    dtype, channels_last = conv_precision(device)
    out: dict[ConvCall, dict[str, Any]] = {}
    for call in calls:
        row: dict[str, Any] = {
            "label": call.describe(),
            "flops": call.flops,
            "dtype": str(dtype).removeprefix("torch."),
            "channels_last": channels_last,
            "status": "ok",
        }
        try:
            row.update(_time_conv(call, device, warmup, repeats))
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            row.update(status="oom", forward_s=None, train_s=None)
            row.update(forward_tflops=None, train_tflops=None)
            free_memory(device)
        out[call] = row
    return out


def conv_time(
    calls: Mapping[ConvCall, int], throughput: Mapping[ConvCall, dict[str, Any]]
) -> dict[str, float | None]:
    """Time the convolutions of one training step need at the measured throughput.

    ``calls``: call -> number of forward calls in one step's forward pass. Returns ``time_s``
    (sum of count x forward+backward time; ``None`` if a call was not measured) and ``tflops``.
    """
    total_s, total_flops = 0.0, 0
    for call, count in calls.items():
        row = throughput.get(call)
        if row is None or row.get("train_s") is None:
            return {"time_s": None, "tflops": None}
        total_s += count * row["train_s"]
        total_flops += count * TRAIN_FACTOR * call.flops
    return {"time_s": total_s, "tflops": total_flops / total_s / 1e12 if total_s else None}


def copy_bandwidth(
    device: torch.device, nbytes: int, *, warmup: int = 2, repeats: int = 5
) -> dict[str, Any]:
    """Bandwidth of ``dst.copy_(src)`` for buffers of ``nbytes`` on ``device`` (GB/s, 1e9)."""
    if nbytes < 1:
        raise ValueError(f"copy size must be positive, got {nbytes}")
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    timing = time_calls(lambda: dst.copy_(src), device, warmup=warmup, repeats=repeats)
    seconds = timing["time_s"]
    return {"bytes": nbytes, "time_s": seconds, "gb_per_s": 2 * nbytes / seconds / 1e9}


# ----------------------------------------------------------------------------- CNN-only floor


def cnn_roots(net: nn.Module) -> list[nn.Module]:
    """The outermost CNN modules (:data:`CNN_TYPES`) inside ``net``, in registration order."""
    roots: list[nn.Module] = []
    inside: set[int] = set()
    for module in net.modules():
        if id(module) in inside:
            continue
        if isinstance(module, CNN_TYPES):
            roots.append(module)
            inside.update(id(m) for m in module.modules())
    if not roots:
        raise ValueError(
            f"no CNN ({', '.join(t.__name__ for t in CNN_TYPES)}) found in {type(net).__name__}"
        )
    return roots


def record_cnn_calls(
    forward: Callable[[], Any], roots: list[nn.Module]
) -> list[tuple[nn.Module, torch.Size, torch.dtype]]:
    """``(module, input shape, input dtype)`` of every call of ``roots`` in one ``forward()``."""
    calls: list[tuple[nn.Module, torch.Size, torch.dtype]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        calls.append((module, args[0].shape, args[0].dtype))

    handles = [root.register_forward_pre_hook(hook) for root in roots]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ValueError("the forward pass called none of the CNNs")
    return calls


class CnnFloor:
    """A training step of a network's CNNs alone (module docstring).

    Args:
        calls: ``(module, input shape, dtype)`` per CNN call of one forward pass
            (:func:`record_cnn_calls`).
        device: where the inputs live (the modules must already be there).
        amp: run the CNNs under bf16 autocast, as the strategies do with ``amp``.
        optimizer_kwargs: extra ``torch.optim.Adam`` arguments (e.g. ``fused=True``).
    """

    def __init__(
        self,
        calls: list[tuple[nn.Module, torch.Size, torch.dtype]],
        device: torch.device,
        amp: bool = False,
        lr: float = 1e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not calls:
            raise ValueError("CnnFloor needs at least one CNN call")
        self.device = device
        self.amp = amp
        self.modules = list({id(m): m for m, _, _ in calls}.values())
        inputs: dict[tuple[torch.Size, torch.dtype], torch.Tensor] = {}
        self.calls: list[tuple[nn.Module, torch.Tensor]] = []
        for module, shape, dtype in calls:
            key = (shape, dtype)
            if key not in inputs:
                g = torch.Generator().manual_seed(len(inputs))
                x = torch.randn(shape, dtype=dtype, generator=g).to(device)
                inputs[key] = x.requires_grad_(True)
            self.calls.append((module, inputs[key]))
        params = [p for m in self.modules for p in m.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=lr, **(optimizer_kwargs or {}))

    def forward(self) -> None:
        """Every CNN call once (for counting FLOPs; the caller chooses the grad mode)."""
        with bf16_autocast(self.device, self.amp):
            for module, x in self.calls:
                module(x)

    def step(self) -> None:
        """Zero grads, forward + backward of each call in turn, one Adam step."""
        self.optimizer.zero_grad(set_to_none=True)
        for module, x in self.calls:
            with bf16_autocast(self.device, self.amp):
                out = module(x)
            out.float().square().mean().backward()
            x.grad = None
            del out
        self.optimizer.step()
