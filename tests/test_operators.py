"""FFT against numpy and the SENSE operator's adjointness, linearity, gram and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gleam_mri.fft import centred_fft, fftnc, ifftnc
from gleam_mri.physics.coils import birdcage_maps, rss
from gleam_mri.physics.operators import SenseOp
from helpers import assert_adjoint, assert_linear, assert_vjp_is_adjoint, randn_complex

# (name, image axes D, fft_ndim, coils); odd sizes on purpose.
CASES = [
    ("2d", (13, 9), 2, 3),
    ("3d", (5, 11, 7), 3, 2),
    ("cine", (4, 9, 7), 2, 3),
]


def _numpy_fftnc(x: np.ndarray, ndim: int, inverse: bool = False) -> np.ndarray:
    axes = tuple(range(-ndim, 0))
    fn = np.fft.ifftn if inverse else np.fft.fftn
    return np.fft.fftshift(fn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


FFT_CASES = [
    (shape, ndim)
    for shape in [(8, 6), (7, 9), (2, 5, 7, 3), (3, 4, 6, 5)]
    for ndim in (1, 2, 3)
    if ndim <= len(shape)
]


@pytest.mark.parametrize("shape,ndim", FFT_CASES)
def test_fft_matches_numpy(shape, ndim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    got = fftnc(torch.from_numpy(x), ndim).numpy()
    np.testing.assert_allclose(got, _numpy_fftnc(x, ndim), rtol=1e-12, atol=1e-12)
    got_inv = ifftnc(torch.from_numpy(x), ndim).numpy()
    np.testing.assert_allclose(got_inv, _numpy_fftnc(x, ndim, inverse=True), atol=1e-12)
    np.testing.assert_allclose(
        ifftnc(fftnc(torch.from_numpy(x), ndim), ndim).numpy(), x, atol=1e-12
    )


def test_fft_dc_at_centre_for_odd_sizes():
    x = torch.ones(7, 5, dtype=torch.complex128)
    k = fftnc(x, 2)
    assert k.abs().argmax().item() == 3 * 5 + 2  # index (N//2, M//2)
    assert torch.isclose(k.abs().max(), torch.tensor(np.sqrt(35.0), dtype=torch.float64))


@pytest.mark.parametrize("axes", [(1,), (-3, -1), (0, 2, 3)])
def test_centred_fft_on_any_axes_of_tensors_and_arrays(axes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 5, 4)) + 1j * rng.standard_normal((3, 6, 5, 4))
    for inverse in (False, True):
        fn = np.fft.ifftn if inverse else np.fft.fftn
        want = np.fft.fftshift(fn(np.fft.ifftshift(x, axes), axes=axes, norm="ortho"), axes)
        np.testing.assert_allclose(centred_fft(x, axes, inverse), want, rtol=1e-12, atol=1e-12)
        got = centred_fft(torch.from_numpy(x), axes, inverse)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    assert torch.equal(fftnc(torch.from_numpy(x), 2), centred_fft(torch.from_numpy(x), (-2, -1)))


def test_rss_of_tensors_and_arrays():
    x = randn_complex(2, 3, 5, 4, dtype=torch.complex64)
    want = x.abs().pow(2).sum(1).sqrt()
    torch.testing.assert_close(rss(x), want)
    assert rss(x, dim=0, keepdim=True).shape == (1, 3, 5, 4)
    np.testing.assert_allclose(rss(x.numpy()), want.numpy(), rtol=1e-6)
    assert rss(x.numpy(), dim=1, keepdim=True).shape == (2, 1, 5, 4)


def test_fft_rejects_bad_ndim():
    with pytest.raises(ValueError, match="ndim"):
        fftnc(torch.zeros(3, 3, dtype=torch.complex64), 0)
    with pytest.raises(ValueError, match="axes"):
        ifftnc(torch.zeros(3, 3, dtype=torch.complex64), 3)


def _operator(dims, fft_ndim, coils, device, kind, batch=2, dtype=torch.complex128):
    g = torch.Generator().manual_seed(0)
    maps = randn_complex(batch, coils, *dims, dtype=dtype, generator=g).to(device)
    mask_shape = [batch, 1, *dims]
    mask_shape[-2] = 1  # masks never vary along the readout
    if kind == "2d":
        mask_shape[2] = 1
    mask = (torch.rand(*mask_shape, generator=g) > 0.5).to(device)
    return SenseOp(maps, mask, fft_ndim), g


@pytest.mark.parametrize("kind,dims,fft_ndim,coils", CASES)
def test_sense_adjoint_linear_vjp(kind, dims, fft_ndim, coils, device):
    op, g = _operator(dims, fft_ndim, coils, device, kind)
    x = randn_complex(2, *dims, generator=g).to(device)
    y = randn_complex(2, coils, *dims, generator=g).to(device)
    assert_adjoint(op, x, y, rtol=1e-12)
    assert_linear(op, x, randn_complex(2, *dims, generator=g).to(device), rtol=1e-12)
    assert_vjp_is_adjoint(op, x, y, rtol=1e-10)
    # .H is the adjoint operator, and its adjoint is the operator again
    torch.testing.assert_close(op.H(y), op.adjoint(y))
    torch.testing.assert_close(op.H.H(x), op.forward(x))


@pytest.mark.parametrize("kind,dims,fft_ndim,coils", CASES)
def test_sense_adjoint_single_precision(kind, dims, fft_ndim, coils):
    op, g = _operator(dims, fft_ndim, coils, "cpu", kind, dtype=torch.complex64)
    x = randn_complex(2, *dims, dtype=torch.complex64, generator=g)
    y = randn_complex(2, coils, *dims, dtype=torch.complex64, generator=g)
    assert_adjoint(op, x, y, rtol=1e-5)


@pytest.mark.parametrize("kind,dims,fft_ndim,coils", CASES)
def test_gram_is_adjoint_of_forward_and_hermitian(kind, dims, fft_ndim, coils):
    op, g = _operator(dims, fft_ndim, coils, "cpu", kind)
    x1, x2 = randn_complex(2, *dims, generator=g), randn_complex(2, *dims, generator=g)
    torch.testing.assert_close(op.gram(x1), op.adjoint(op.forward(x1)))
    lhs = (x2.conj() * op.gram(x1)).sum()
    rhs = (op.gram(x2).conj() * x1).sum()
    torch.testing.assert_close(lhs, rhs)
    assert ((x1.conj() * op.gram(x1)).sum().real >= 0).item()


def test_cine_masks_act_per_frame():
    dims = (3, 8, 6)
    maps = birdcage_maps(4, dims[1:]).unsqueeze(1).expand(4, 3, 8, 6)[None]
    mask = torch.zeros(1, 1, 3, 1, 6)
    for t in range(3):
        mask[..., t, :, t::3] = 1
    op = SenseOp(maps, mask, fft_ndim=2)
    y = op.forward(torch.ones(1, *dims, dtype=torch.complex64))
    for t in range(3):
        sampled = y[0, :, t].abs().sum(dim=(0, 1)) > 0
        assert sampled.nonzero().flatten().remainder(3).eq(t).all()


def test_fully_sampled_birdcage_is_isometry():
    maps = birdcage_maps(6, (12, 10))[None]
    op = SenseOp(maps, None, 2)
    x = randn_complex(1, 12, 10, dtype=torch.complex64)
    torch.testing.assert_close(op.gram(x), x, rtol=1e-5, atol=1e-5)


def test_operator_is_immutable_and_validates():
    maps = birdcage_maps(2, (8, 8))[None]
    op = SenseOp(maps, torch.ones(1, 1, 1, 8), 2)
    with pytest.raises(AttributeError, match="immutable"):
        op.mask = None
    with pytest.raises(AttributeError, match="immutable"):
        op.H.maps = None
    with pytest.raises(TypeError, match="complex"):
        SenseOp(maps.real, None, 2)
    with pytest.raises(ValueError, match="broadcast"):
        SenseOp(maps, torch.ones(1, 1, 1, 5), 2)
    with pytest.raises(TypeError, match="complex"):
        SenseOp(maps, torch.ones(1, 1, 1, 8, dtype=torch.complex64), 2)
    # shapes are checked once, when the operator is built; forward / adjoint check nothing
    with pytest.raises(ValueError, match="at least 2 encoded axes"):
        SenseOp(maps[0], None, 2)  # maps (C, H, W): no batch axis
    with pytest.raises(ValueError, match="more axes than the maps"):
        SenseOp(maps, torch.ones(1, 1, 1, 1, 8), 2)
    with pytest.raises(ValueError, match="fft_ndim must be >= 1"):
        SenseOp(maps, None, 0)
    assert op.with_mask(None).mask is None and op.mask is not None
