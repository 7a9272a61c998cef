"""CNN regularisers: shapes on odd sizes, gradients, near-identity start, scale equivariance,
bf16 autocast, batch independence, the dims semantics of the real U-Net / ResNet, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gleam_mri.models.regularizers import (
    ResNet,
    ResNetRegularizer,
    UNetRegularizer,
    build_regularizer,
    normalize_channels,
)
from gleam_mri.models.unet import UNet, make_conv

# odd / non-power-of-two image axes D on purpose
SHAPES = {"2d": (13, 11), "3d": (5, 12, 9), "2d+t": (4, 10, 7)}
# tiny networks, so the whole file runs in a few seconds
SMALL = {"resnet": {"features": 8, "blocks": 2}, "unet": {"features": 4, "levels": 2}}
CASES = [(name, dims) for name in SMALL for dims in SHAPES]


def _image(dims: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *SHAPES[dims], dtype=torch.complex64, generator=g)
    return x + (0.5 - 0.3j)  # a non-zero mean, which the normalisation must remove and restore


def _small(name: str, dims: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_regularizer(name, dims, **{**SMALL[name], **kwargs})


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name,dims", CASES)
def test_shape_and_dtype_follow_the_input(name, dims):
    reg = _small(name, dims)
    x = _image(dims)
    y = reg(x)
    assert y.shape == x.shape and y.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(y)).all()
    y64 = reg.double()(x.to(torch.complex128))
    assert y64.shape == x.shape and y64.dtype == torch.complex128


@pytest.mark.parametrize("name,dims", CASES)
def test_gradients_reach_every_parameter(name, dims):
    reg = _small(name, dims)
    x = _image(dims).requires_grad_(True)
    loss = (reg(x) - _image(dims, seed=1)).abs().pow(2).sum()
    loss.backward()
    for pname, p in reg.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} received a zero gradient"
    assert torch.isfinite(torch.view_as_real(x.grad)).all()


@pytest.mark.parametrize("name,dims", CASES)
def test_near_identity_at_initialisation(name, dims):
    x = _image(dims)
    assert _rel(_small(name, dims)(x), x) < 0.05  # default out_scale=1e-2
    # out_scale=0 is the identity exactly; a default-initialised last layer is far from it
    assert torch.equal(_small(name, dims, out_scale=0.0)(x), x)
    assert _rel(_small(name, dims, out_scale=1.0)(x), x) > 0.1


def test_default_resnet_starts_near_identity():
    torch.manual_seed(0)
    x = _image("2d")
    assert _rel(ResNetRegularizer("2d")(x), x) < 0.02


@pytest.mark.parametrize("name,dims", CASES)
def test_scale_equivariance(name, dims):
    """R(c x) = c R(x) for c > 0: compared on the residual R(x) - x, made O(1) by out_scale=1."""
    reg = _small(name, dims, out_scale=1.0)
    x = _image(dims)
    residual = reg(x) - x
    assert residual.norm() > 0.1 * x.norm()
    for c in (1e-4, 3.7, 2e5):
        scaled_residual = reg(c * x) - c * x
        assert _rel(scaled_residual, c * residual) < 1e-5, f"c={c}"


def test_normalisation_keeps_a_zero_imaginary_part_small():
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    x[1, 1] = 0.0  # sample 1: a real image
    x[0, 1] *= 1e-9  # sample 0: round-off-sized imaginary part, not blown up to unit variance
    xn, mean, std = normalize_channels(x)
    assert torch.allclose(xn * std + mean, x, rtol=0, atol=1e-12)
    assert (xn[1, 1] == 0).all() and xn[0, 1].abs().max() < 1e-4
    real_std = xn[:, 0].flatten(1).std(dim=1, correction=0)
    assert torch.allclose(real_std, torch.ones(2, dtype=x.dtype))


@pytest.mark.parametrize("name,dims", CASES)
def test_bf16_autocast(name, dims):
    reg = _small(name, dims, out_scale=1.0)
    conv_dtypes = set()
    for m in reg.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            m.register_forward_hook(lambda _m, _i, out: conv_dtypes.add(out.dtype))
    x = _image(dims)
    reference = reg(x) - x
    conv_dtypes.clear()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = reg(x)
    assert conv_dtypes == {torch.bfloat16}
    assert y.dtype == torch.complex64 and y.shape == x.shape
    assert _rel(y - x, reference) < 0.05  # bf16 has an 8-bit mantissa


@pytest.mark.parametrize("name,dims", CASES)
def test_batch_items_are_independent(name, dims):
    reg = _small(name, dims, out_scale=1.0)
    x = _image(dims, batch=3).requires_grad_(True)
    y = reg(x)
    y[0].abs().sum().backward()
    assert x.grad[0].abs().sum() > 0
    assert (x.grad[1:] == 0).all()
    assert torch.allclose(reg(x[:1].detach()), y[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims,mixes_frames", [("2d", False), ("2d+t", True), ("3d", True)])
@pytest.mark.parametrize("net_cls", [ResNet, UNet])
def test_real_nets_fold_or_mix_the_leading_axis(net_cls, dims, mixes_frames):
    """Under "2d" each frame is its own image (folded into the batch); "2d+t"/"3d" mix frames."""
    torch.manual_seed(0)
    net = net_cls(2, 3, dims, features=4, **({"levels": 2} if net_cls is UNet else {}))
    x = torch.randn(2, 2, 3, 9, 6, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 3, 3, 9, 6)
    y[:, :, 0].sum().backward()
    assert (x.grad[:, :, 1].abs().sum() > 0) == mixes_frames
    assert x.grad[:, :, 0].abs().sum() > 0


def test_unet_pools_time_only_for_3d():
    """The bottleneck keeps every frame under "2d+t"; "3d" pools Z as well (after padding)."""
    bottleneck = {}
    for dims in ("2d+t", "3d"):
        torch.manual_seed(0)
        net = UNet(2, 2, dims, features=4, levels=2)
        net.down[-1].register_forward_hook(lambda _m, _i, out, d=dims: bottleneck.update({d: out}))
        assert net(torch.randn(1, 2, 5, 12, 9)).shape == (1, 2, 5, 12, 9)
    assert bottleneck["2d+t"].shape[2:] == (5, 3, 3)
    assert bottleneck["3d"].shape[2:] == (2, 3, 3)


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (17, 30), (1, 5)])
def test_unet_any_size_including_tiny(shape):
    torch.manual_seed(0)
    net = UNet(2, 2, "2d", features=4, levels=3)
    x = torch.randn(2, 2, *shape)
    assert net(x).shape == x.shape


def test_default_parameter_counts_match_the_architecture():
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    f, k2 = 64, 9  # features, spatial kernel elements
    conv2d = f * f * k2 + f
    assert count(ResNetRegularizer("2d")) == (2 * f * k2 + f) + 5 * 2 * conv2d + (f * 2 * k2 + 2)
    # "2d+t": spatial (1,3,3) without bias, then temporal (3,1,1) with bias
    factorised = f * f * k2 + f * f * 3 + f
    first = 2 * f * k2 + f * f * 3 + f
    last = f * 2 * k2 + 2 * 2 * 3 + 2
    assert count(ResNetRegularizer("2d+t")) == first + 5 * 2 * factorised + last
    assert count(make_conv("3d", 4, 5)) == 4 * 5 * 27 + 5
    assert (
        count(UNetRegularizer("3d")) > count(UNetRegularizer("2d+t")) > count(UNetRegularizer("2d"))
    )


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown regularizer 'vit'.*resnet, unet"):
        build_regularizer("vit", "2d")
    with pytest.raises(ValueError, match=r"unknown dims '4d'.*2d, 3d, 2d\+t"):
        build_regularizer("unet", "4d")
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        ResNetRegularizer("2d", kernel_size=4)
    with pytest.raises(ValueError, match="features >= 1"):
        UNetRegularizer("2d", features=0)
    reg = _small("resnet", "3d")
    with pytest.raises(TypeError, match="complex image"):
        reg(torch.randn(1, 5, 6, 7))
    with pytest.raises(ValueError, match="at least 3 image axes"):
        reg(torch.randn(1, 6, 7, dtype=torch.complex64))
    net = UNet(2, 2, "2d", features=4, levels=1)
    with pytest.raises(ValueError, match=r"expected \(N, 2, \*D\)"):
        net(torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="real floating-point"):
        net(torch.randn(1, 2, 8, 8, dtype=torch.complex64))
