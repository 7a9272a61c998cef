"""Data-consistency layers: forward against direct formulas, gradients, implicit CG backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.utils.checkpoint
from torch.func import functional_call

from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.linalg import conjugate_gradient
from gleam_mri.models.dc import GradientDC, KspaceDC, ProximalDC, proximal_solve
from gleam_mri.physics.operators import SenseOp

# kind -> (image shape D, fft_ndim); the mask varies along every axis of D except H (axis -2)
KINDS = {"2d": ((6, 5), 2), "3d": ((3, 4, 5), 3), "cine": ((3, 4, 5), 2)}
DTYPES = [torch.complex64, torch.complex128]
TOL = {torch.complex64: 1e-4, torch.complex128: 1e-10}


def make_problem(kind: str, dtype: torch.dtype, batch: int = 2, coils: int = 3, seed: int = 0):
    """Random normalised maps, a random mask, the operator, an image ``x`` and ``y = A x_true``."""
    shape, fft_ndim = KINDS[kind]
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(batch, coils, *shape, dtype=dtype, generator=g)
    maps = maps / maps.abs().pow(2).sum(dim=1, keepdim=True).sqrt()
    mask_shape = [batch, 1, *shape]
    mask_shape[-2] = 1  # readout fully sampled
    mask = (torch.rand(mask_shape, generator=g) < 0.5).to(dtype.to_real())
    mask[..., shape[-1] // 2] = 1  # centre line always sampled
    op = SenseOp(maps, mask, fft_ndim)
    x = torch.randn(batch, *shape, dtype=dtype, generator=g)
    y = op.forward(torch.randn(batch, *shape, dtype=dtype, generator=g))
    return op, x, y


def reference_forward(op: SenseOp, x: torch.Tensor) -> np.ndarray:
    """``A x`` in numpy float64: mask * centred orthonormal FFT of the coil images."""
    axes = tuple(range(-op.fft_ndim, 0))
    coil = op.maps.numpy().astype(np.complex128) * x.numpy()[:, None]
    k = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(coil, axes), axes=axes, norm="ortho"), axes)
    return k * op.mask.numpy()


def reference_adjoint(op: SenseOp, y: np.ndarray) -> np.ndarray:
    """``A^H y`` in numpy float64."""
    axes = tuple(range(-op.fft_ndim, 0))
    y = y * op.mask.numpy()
    coil = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(y, axes), axes=axes, norm="ortho"), axes)
    return (op.maps.numpy().conj().astype(np.complex128) * coil).sum(axis=1)


def dense_normal(op: SenseOp, lam: float) -> torch.Tensor:
    """``A^H A + lam I`` as dense ``(B, n, n)`` matrices, column by column."""
    batch, shape = op.maps.shape[0], op.maps.shape[2:]
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=op.maps.dtype).reshape(n, 1, *shape).expand(n, batch, *shape)
    cols = torch.stack([op.gram(e).reshape(batch, n) for e in eye], dim=-1)
    return cols + lam * torch.eye(n, dtype=op.maps.dtype)


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    err = ((actual - expected).norm() / expected.norm()).item()
    assert err <= rtol, f"relative error {err:.3e} > {rtol:.1e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_dc_matches_direct_formula(kind, dtype):
    op, x, y = make_problem(kind, dtype)
    layer = GradientDC(step_init=0.7)
    out = layer(x, op, y)
    assert out.shape == x.shape and out.dtype == dtype
    residual = reference_forward(op, x) - y.numpy()
    step = layer.step.double().item()  # the float32 weight's exact value
    expected = x.numpy() - step * reference_adjoint(op, residual)
    assert_rel_close(out.detach().to(torch.complex128), torch.from_numpy(expected), TOL[dtype])
    assert layer.step.item() == pytest.approx(0.7, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_kspace_dc_matches_direct_formula(kind, dtype):
    op, x, y = make_problem(kind, dtype)
    k = op.forward(x) + torch.randn_like(y)  # an estimate that is non-zero off the mask
    layer = KspaceDC(eta_init=0.3)
    out = layer(k, y, op.mask)
    assert out.shape == k.shape and out.dtype == dtype
    eta = layer.eta.double().item()
    assert_rel_close(out.detach(), k - eta * op.mask * (k - y), TOL[dtype])
    # eta = 1 with a binary mask: sampled entries become y, the others stay k (bool mask too)
    hard = KspaceDC()(k, y, op.mask.bool())
    sampled = op.mask.bool().expand_as(k)
    torch.testing.assert_close(hard[sampled], y[sampled])
    torch.testing.assert_close(hard[~sampled], k[~sampled])
    torch.testing.assert_close(KspaceDC(0.5)(k, y, None), k - 0.5 * (k - y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_proximal_dc_matches_dense_solve(kind, dtype):
    op, z, y = make_problem(kind, dtype)
    layer = ProximalDC(lam_init=0.2, max_iter=100, tol=1e-12)
    lam = layer.lam.double().item()
    x = layer(z, op, y)
    assert x.shape == z.shape and x.dtype == dtype
    op128 = SenseOp(op.maps.to(torch.complex128), op.mask, op.fft_ndim)
    rhs = (op128.adjoint(y.to(torch.complex128)) + lam * z.to(torch.complex128)).flatten(1)
    direct = torch.linalg.solve(dense_normal(op128, lam), rhs).reshape(z.shape)
    assert_rel_close(x.detach().to(torch.complex128), direct, TOL[dtype])
    # the functional form with a float weight gives the same solution
    torch.testing.assert_close(proximal_solve(z, op, y, lam, max_iter=100, tol=1e-12), x.detach())


def _unrolled_cg(z, op, y, lam, max_iter, tol):
    """The same CG, differentiated by autograd through every iteration."""
    rhs = op.adjoint(y) + lam * z
    return conjugate_gradient(lambda v: op.gram(v) + lam * v, rhs, max_iter=max_iter, tol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_implicit_backward_matches_autograd_through_unrolled_cg(kind):
    op, z, y = make_problem(kind, torch.complex128, seed=1)
    upstream = torch.randn_like(z)
    grads = []
    for solve in (proximal_solve, _unrolled_cg):
        zz, yy = z.clone().requires_grad_(), y.clone().requires_grad_()
        maps = op.maps.clone().requires_grad_()
        lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        x = solve(zz, SenseOp(maps, op.mask, op.fft_ndim), yy, lam, max_iter=200, tol=1e-14)
        loss = (x.conj() * upstream).real.sum() + x.abs().pow(2).sum()  # non-linear in x
        grads.append(torch.autograd.grad(loss, (zz, lam, yy, maps)))
    for name, implicit, unrolled in zip(("z", "lam", "y", "maps"), *grads, strict=True):
        assert implicit.shape == unrolled.shape, name
        err = ((implicit - unrolled).norm() / unrolled.norm()).item()
        assert err <= 1e-6, f"grad {name}: relative error {err:.2e}"


def test_proximal_solve_passes_gradcheck():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(2, 2, 4, 3, dtype=torch.complex128, generator=g)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    z = torch.randn(2, 4, 3, dtype=torch.complex128, generator=g)
    y = torch.randn(2, 2, 4, 3, dtype=torch.complex128, generator=g) * mask
    lam = torch.tensor(0.4, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (z, lam, y, maps))

    def solve(z, lam, y, maps):
        return proximal_solve(z, SenseOp(maps, mask, 2), y, lam, max_iter=100, tol=1e-13)

    # fast mode: compares random projections v^H J u of the analytic and numerical Jacobians
    # (the full gradients are compared with the unrolled CG above)
    assert torch.autograd.gradcheck(solve, inputs, fast_mode=True)


@pytest.mark.parametrize("kind", ["2d", "cine"])
def test_gradient_and_kspace_dc_pass_gradcheck(kind):
    op, x, y = make_problem(kind, torch.complex128, batch=1, coils=2)
    grad_layer, k_layer = GradientDC(0.6).double(), KspaceDC(0.8).double()
    raw = grad_layer.raw_step.detach().clone().requires_grad_()
    eta = k_layer.eta.detach().clone().requires_grad_()
    x.requires_grad_()
    y.requires_grad_()

    def grad_step(x, y, raw):
        return functional_call(grad_layer, {"raw_step": raw}, (x, op, y))

    def k_step(k, y, eta):
        return functional_call(k_layer, {"eta": eta}, (k, y, op.mask))

    assert torch.autograd.gradcheck(grad_step, (x, y, raw), fast_mode=True)
    k = op.forward(x.detach()).requires_grad_()
    assert torch.autograd.gradcheck(k_step, (k, y, eta), fast_mode=True)


def _saved(fn) -> tuple[int, int]:
    """Number and bytes of tensors autograd saves while ``fn()`` builds its graph; runs backward."""
    count, nbytes = [0], [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        nbytes[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.abs().pow(2).sum().backward()
    return count[0], nbytes[0]


def test_saved_tensors_do_not_grow_with_cg_iterations():
    op, z, y = make_problem("2d", torch.complex64)
    z.requires_grad_()
    implicit, unrolled = {}, {}
    lam = torch.tensor(0.05, requires_grad=True)
    for n in (2, 20):  # tol 0: every iteration runs
        implicit[n] = _saved(lambda n=n: proximal_solve(z, op, y, lam, max_iter=n, tol=0.0))
        unrolled[n] = _saved(lambda n=n: _unrolled_cg(z, op, y, lam, n, 0.0))
        assert lam.grad is not None and z.grad is not None
    assert implicit[2] == implicit[20]
    layer_saved = [_saved(lambda n=n: ProximalDC(max_iter=n, tol=0.0)(z, op, y)) for n in (2, 20)]
    assert layer_saved[0] == layer_saved[1]
    # x, z, lam, y, maps, mask: the output and the inputs, nothing per iteration
    assert implicit[20][0] == 6
    assert unrolled[20][1] > 5 * unrolled[2][1] > 0  # the hooks do see per-iteration tensors


def test_proximal_dc_under_gradient_checkpointing_matches_plain_backward():
    op, z, y = make_problem("cine", torch.complex128)
    layer = ProximalDC(lam_init=0.1, max_iter=8).double()
    grads = []
    for wrap in (False, True):
        zz = z.clone().requires_grad_()
        if wrap:
            x = torch.utils.checkpoint.checkpoint(layer, zz, op, y, use_reentrant=False)
        else:
            x = layer(zz, op, y)
        grads.append(torch.autograd.grad(x.abs().pow(2).sum(), (zz, layer.raw_lam)))
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-12, atol=0)


def test_positive_weights_stay_positive():
    cases = ((GradientDC(1e-3), "raw_step", "step"), (ProximalDC(5.0), "raw_lam", "lam"))
    for layer, name, prop in cases:
        raw = getattr(layer, name)
        assert isinstance(raw, torch.nn.Parameter)
        opt = torch.optim.SGD([raw], lr=1e4)
        raw.grad = torch.tensor(1.0)  # a huge step pushing the weight towards zero and beyond
        opt.step()
        assert raw.item() < -1e3 and getattr(layer, prop).item() > 0  # softplus alone gives 0
        raw.grad = None
        getattr(layer, prop).backward()
        assert raw.grad.item() == 0  # fully saturated, still finite
    assert GradientDC(1e-3).step.item() == pytest.approx(1e-3, rel=1e-5)
    assert ProximalDC(5.0).lam.item() == pytest.approx(5.0, rel=1e-6)
    assert ProximalDC(0.05).lam.item() == pytest.approx(0.05, rel=1e-6)  # default


def test_fixed_weights_are_buffers():
    cases = (
        (GradientDC(learnable=False), "raw_step"),
        (ProximalDC(learnable=False), "raw_lam"),
        (KspaceDC(learnable=False), "eta"),
    )
    for layer, name in cases:
        assert list(layer.parameters()) == []
        assert name in layer.state_dict()
        assert layer.double().state_dict()[name].dtype == torch.float64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_weights_and_inputs(kind, dtype):
    op, x, y = make_problem(kind, dtype)
    x.requires_grad_()

    full = op.with_mask(None)

    def full_kspace(x):  # VarNet's k-space estimate is not masked
        return fftnc(op.maps * x.unsqueeze(1), op.fft_ndim)

    layers = {
        "gradient": (GradientDC(), lambda layer: layer(x, op, y), "raw_step"),
        "proximal": (ProximalDC(max_iter=5), lambda layer: layer(x, op, y), "raw_lam"),
        "kspace": (KspaceDC(), lambda dc: full.adjoint(dc(full_kspace(x), y, op.mask)), "eta"),
    }
    for label, (layer, run, name) in layers.items():
        x.grad = None
        out = run(layer)
        assert out.dtype == dtype, label
        (out - op.adjoint(y)).abs().pow(2).sum().backward()
        weight_grad = getattr(layer, name).grad
        assert weight_grad is not None and torch.isfinite(weight_grad) and weight_grad != 0, label
        assert x.grad is not None and x.grad.dtype == dtype, label
        assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0, label


def test_bad_input_raises_clear_errors():
    op, x, y = make_problem("2d", torch.complex64)
    with pytest.raises(TypeError, match="z must be a complex"):
        ProximalDC()(x.real, op, y)
    with pytest.raises(TypeError, match="op must be a SenseOp"):
        ProximalDC()(x, "not an operator", y)
    with pytest.raises(TypeError, match="lam must be a real"):
        proximal_solve(x, op, y, torch.tensor(1.0 + 0j))
    with pytest.raises(ValueError, match="lam must be"):
        proximal_solve(x, op, y, -1.0)
    with pytest.raises(ValueError, match="expected image"):
        proximal_solve(x, op, y[:, 0], 1.0)
    # GradientDC (every iteration) checks nothing: bad data fail where they enter
    scale = torch.ones(len(y))
    with pytest.raises(TypeError, match="kspace must be complex"):
        MRIBatch(y.real, op.mask, op.maps, None, scale)
    with pytest.raises(ValueError, match="maps must be complex with the kspace shape"):
        MRIBatch(y[..., :-1], op.mask[..., :-1], op.maps, None, scale)
    with pytest.raises(ValueError, match="do not match"):
        ProximalDC()(x[:, :-1], op, y[..., :-1, :])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="step_init"):
            GradientDC(bad)
        with pytest.raises(ValueError, match="lam_init"):
            ProximalDC(bad)
    with pytest.raises(ValueError, match="max_iter"):
        ProximalDC(max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        ProximalDC(tol=-1.0)
    with pytest.raises(ValueError, match="eta_init"):
        KspaceDC(float("inf"))
    with pytest.raises(ValueError, match="differ"):
        KspaceDC()(y, y[:1], None)
    with pytest.raises(ValueError, match="does not broadcast"):
        KspaceDC()(y, y, torch.ones(3, 1, 1, 1))
    with pytest.raises(TypeError, match="mask must be real"):
        KspaceDC()(y, y, op.mask.to(torch.complex64))
