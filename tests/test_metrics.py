"""Metrics against scikit-image / fastMRI's definitions; torch SSIM against numpy; error cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from gleam_mri.metrics import (
    MetricsAccumulator,
    SSIMLoss,
    nmse,
    psnr,
    ssim,
    ssim_torch,
    volume_metrics,
)

skm = pytest.importorskip("skimage.metrics")

# Odd and even sizes, a single slice, the smallest legal image (7x7) and a bare 2D image.
SHAPES = [(1, 7, 7), (3, 13, 17), (2, 32, 24), (4, 9, 31), (11, 15)]


def _volume(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A non-negative magnitude-like image: smooth structure plus texture."""
    h, w = shape[-2:]
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    smooth = np.exp(-(xx**2 + yy**2) * 2.0)
    return 3.0 * smooth * (0.5 + rng.random(shape))


def _pred(rng: np.random.Generator, gt: np.ndarray, kind: str) -> np.ndarray:
    if kind == "noisy":
        return gt + 0.1 * gt.max() * rng.standard_normal(gt.shape)
    return 2.0 * rng.random(gt.shape)  # unrelated to gt


# fastMRI's definitions written with scikit-image (fastmri/evaluate.py).
def _ref_nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def _ref_psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None) -> float:
    maxval = gt.max() if maxval is None else maxval
    return float(skm.peak_signal_noise_ratio(gt, pred, data_range=maxval))


def _ref_ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None) -> float:
    gt3, pred3 = (gt[None], pred[None]) if gt.ndim == 2 else (gt, pred)
    maxval = gt3.max() if maxval is None else maxval
    pairs = zip(gt3, pred3, strict=True)
    values = [skm.structural_similarity(g, p, data_range=maxval) for g, p in pairs]
    return float(np.mean(values))


# ----------------------------------------------------------------------------- numpy vs skimage


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["noisy", "unrelated"])
@pytest.mark.parametrize("maxval", [None, 4.5])
def test_numpy_metrics_equal_skimage_float64(rng, shape, kind, maxval):
    gt = _volume(rng, shape)
    pred = _pred(rng, gt, kind)
    got = volume_metrics(gt, pred, maxval)
    assert set(got) == {"NMSE", "PSNR", "SSIM"}
    assert all(isinstance(v, float) for v in got.values())
    # Exact same arithmetic in float64: far tighter than the 1e-5 the project requires.
    assert got["NMSE"] == pytest.approx(_ref_nmse(gt, pred), rel=1e-10)
    assert got["PSNR"] == pytest.approx(_ref_psnr(gt, pred, maxval), rel=1e-10)
    assert got["SSIM"] == pytest.approx(_ref_ssim(gt, pred, maxval), abs=1e-10)
    assert got["NMSE"] == nmse(gt, pred)
    assert got["PSNR"] == psnr(gt, pred, maxval)
    assert got["SSIM"] == ssim(gt, pred, maxval)


@pytest.mark.parametrize("shape", [(3, 13, 17), (2, 40, 33)], ids=str)
def test_numpy_metrics_equal_skimage_float32_inputs(rng, shape):
    """skimage computes float32 inputs in float32; we compute in float64: agree to 1e-5."""
    gt = _volume(rng, shape).astype(np.float32)
    pred = _pred(rng, gt, "noisy").astype(np.float32)
    got = volume_metrics(gt, pred)
    assert got["NMSE"] == pytest.approx(_ref_nmse(gt, pred), rel=1e-5)
    assert got["PSNR"] == pytest.approx(_ref_psnr(gt, pred, None), rel=1e-5)
    assert got["SSIM"] == pytest.approx(_ref_ssim(gt, pred, None), abs=1e-5)


def test_numpy_ssim_other_window_equals_skimage(rng):
    gt = _volume(rng, (2, 12, 10))
    pred = _pred(rng, gt, "noisy")
    pairs = zip(gt, pred, strict=True)
    ref = np.mean([skm.structural_similarity(g, p, data_range=3.0, win_size=5) for g, p in pairs])
    assert ssim(gt, pred, 3.0, win_size=5) == pytest.approx(ref, abs=1e-10)


def test_default_maxval_is_volume_max_not_slice_max(rng):
    gt = _volume(rng, (3, 12, 12))
    gt[0] *= 10.0  # slices with very different maxima
    pred = _pred(rng, gt, "noisy")
    assert ssim(gt, pred) == pytest.approx(ssim(gt, pred, float(gt.max())), abs=1e-15)
    per_slice_max = np.mean([ssim(g, p) for g, p in zip(gt, pred, strict=True)])
    assert abs(ssim(gt, pred) - per_slice_max) > 1e-3


def test_image_is_one_slice_and_identity(rng):
    gt = _volume(rng, (10, 11))
    pred = _pred(rng, gt, "noisy")
    assert volume_metrics(gt, pred) == volume_metrics(gt[None], pred[None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(gt, gt) == math.inf
    assert nmse(gt, gt) == 0.0
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_against_fastmri_evaluate(rng):
    """fastmri.evaluate imports runstats; this comparison is skipped where it is absent."""
    fm = pytest.importorskip("fastmri.evaluate")
    gt = _volume(rng, (3, 13, 17))
    pred = _pred(rng, gt, "noisy")
    assert nmse(gt, pred) == pytest.approx(float(fm.nmse(gt, pred)), rel=1e-10)
    for maxval in (None, 4.5):
        assert psnr(gt, pred, maxval) == pytest.approx(float(fm.psnr(gt, pred, maxval)), rel=1e-10)
        ref = float(np.asarray(fm.ssim(gt, pred, maxval)).item())
        assert ssim(gt, pred, maxval) == pytest.approx(ref, abs=1e-10)


# ----------------------------------------------------------------------------- numpy errors


@pytest.mark.parametrize(
    ("gt_shape", "pred_shape", "match"),
    [
        ((2, 9, 9), (2, 9, 10), "shapes differ"),
        ((9,), (9,), "image \\(H, W\\) or a volume"),
        ((2, 2, 9, 9), (2, 2, 9, 9), "image \\(H, W\\) or a volume"),
        ((0, 9, 9), (0, 9, 9), "empty"),
    ],
)
def test_numpy_shape_errors(gt_shape, pred_shape, match):
    for fn in (nmse, psnr, ssim, volume_metrics):
        with pytest.raises(ValueError, match=match):
            fn(np.ones(gt_shape), np.ones(pred_shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_numpy_non_finite_errors(bad):
    gt = np.ones((2, 9, 9))
    pred = gt.copy()
    pred[1, 4, 4] = bad
    for fn in (nmse, psnr, ssim):
        with pytest.raises(ValueError, match="pred contains NaN or Inf"):
            fn(gt, pred)
        with pytest.raises(ValueError, match="gt contains NaN or Inf"):
            fn(pred, gt)


def test_numpy_value_errors():
    gt = np.ones((2, 6, 10))
    with pytest.raises(ValueError, match="smaller than the 7x7 SSIM window"):
        ssim(gt, gt)
    gt = np.ones((9, 9))
    for maxval in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="maxval must be finite and > 0"):
            psnr(gt, gt, maxval)
        with pytest.raises(ValueError, match="maxval must be finite and > 0"):
            ssim(gt, gt, maxval)
    with pytest.raises(ValueError, match=r"gt.max\(\) \(the default maxval\)"):
        psnr(-gt, gt)
    with pytest.raises(ValueError, match="gt is all zeros"):
        nmse(np.zeros((9, 9)), gt)
    with pytest.raises(ValueError, match="win_size must be odd"):
        ssim(gt, gt, win_size=4)
    with pytest.raises(TypeError, match="complex"):
        nmse(gt.astype(np.complex64), gt)
    with pytest.raises(TypeError, match="real numeric"):
        nmse(np.full((9, 9), "a"), gt)


# ----------------------------------------------------------------------------- MetricsAccumulator


def test_metrics_accumulator(rng):
    acc = MetricsAccumulator()
    assert len(acc) == 0 and all(math.isnan(v) for v in acc.means().values())
    volumes = []
    for i, shape in enumerate([(2, 12, 12), (3, 9, 15), (1, 20, 8)]):
        gt = _volume(rng, shape)
        pred = _pred(rng, gt, "noisy")
        assert acc.push(gt, pred, name=f"v{i}") == volume_metrics(gt, pred)
        volumes.append(volume_metrics(gt, pred))
        if i == 0:
            assert all(math.isnan(v) for v in acc.stds().values())  # one volume: no spread
    assert len(acc) == 3
    assert [r["name"] for r in acc.records] == ["v0", "v1", "v2"]
    for key in ("NMSE", "PSNR", "SSIM"):
        column = np.array([v[key] for v in volumes])
        assert acc.means()[key] == pytest.approx(column.mean(), rel=1e-12)
        assert acc.stds()[key] == pytest.approx(column.std(ddof=1), rel=1e-12)
    text = repr(acc)
    assert text.startswith("NMSE = ") and "PSNR = " in text and "SSIM = " in text
    assert f"+/- {2 * acc.stds()['SSIM']:.4g}" in text
    with pytest.raises(ValueError, match=r"\['SSIM'\] are missing"):
        acc.add({"NMSE": 0.1, "PSNR": 30.0})


# ----------------------------------------------------------------------------- torch SSIM


@pytest.mark.parametrize("shape", [(3, 13, 17), (2, 4, 9, 8), (2, 3, 2, 11, 7)], ids=str)
@pytest.mark.parametrize("per_item_range", [False, True])
def test_ssim_torch_equals_numpy_float64(rng, shape, per_item_range):
    gt = _volume(rng, shape)
    pred = _pred(rng, gt, "noisy")
    ranges = gt.reshape(shape[0], -1).max(axis=1) if per_item_range else np.full(shape[0], 2.0)
    data_range = torch.from_numpy(ranges) if per_item_range else 2.0
    got = ssim_torch(torch.from_numpy(pred), torch.from_numpy(gt), data_range)
    assert got.shape == (shape[0],) and got.dtype == torch.float64
    for b in range(shape[0]):
        ref = ssim(gt[b].reshape(-1, *shape[-2:]), pred[b].reshape(-1, *shape[-2:]), ranges[b])
        assert got[b].item() == pytest.approx(ref, abs=1e-6)
        assert abs(got[b].item() - ref) < 1e-12  # identical arithmetic in float64


def test_ssim_torch_float32_close_to_numpy(rng):
    gt = _volume(rng, (2, 24, 20))
    pred = _pred(rng, gt, "noisy")
    got = ssim_torch(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), 3.0)
    assert got.dtype == torch.float32
    for b in range(2):
        assert got[b].item() == pytest.approx(ssim(gt[b], pred[b], 3.0), abs=1e-5)


def test_ssim_torch_equals_fastmri_ssim_loss(rng):
    fastmri_losses = pytest.importorskip("fastmri.losses")
    gt = torch.from_numpy(_volume(rng, (3, 1, 14, 11)))
    pred = torch.from_numpy(_pred(rng, gt.numpy(), "noisy"))
    data_range = gt.amax(dim=(1, 2, 3))
    loss = fastmri_losses.SSIMLoss().double()
    # fastMRI builds its 1/49 window in float32 (relative error ~1e-8); use the exact float64 one.
    loss.w = torch.full((1, 1, 7, 7), 1 / 49, dtype=torch.float64)
    ref = 1 - loss(pred, gt, data_range, reduced=False)
    got = ssim_torch(pred, gt, data_range)
    torch.testing.assert_close(got, ref.mean(dim=(1, 2, 3)), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("shape", "fast_mode"), [((2, 2, 7, 8), False), ((2, 3, 10, 9), True)])
def test_ssim_torch_gradcheck(shape, fast_mode):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    data_range = torch.tensor([1.0, 1.5], dtype=torch.float64, requires_grad=True)
    inputs = (x, y, data_range)
    assert torch.autograd.gradcheck(ssim_torch, inputs, fast_mode=fast_mode)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_loss(rng, device, dtype):
    gt = torch.from_numpy(_volume(rng, (2, 3, 12, 10))).to(device, dtype)
    pred = torch.from_numpy(_pred(rng, gt.cpu().double().numpy(), "noisy")).to(device, dtype)
    loss_fn = SSIMLoss()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    same = loss_fn(gt, gt)
    assert same.shape == () and same.dtype == dtype and same.device.type == device.type
    assert abs(same.item()) < tol
    pred.requires_grad_(True)
    loss = loss_fn(pred, gt)
    expected = 1 - ssim_torch(pred, gt, gt.reshape(2, -1).amax(dim=1)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=tol)
    assert 0.0 < loss.item() < 1.0
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    # A float data_range gives the same loss as the equal per-item tensor.
    assert loss_fn(pred, gt, 3.0).item() == pytest.approx(
        loss_fn(pred, gt, torch.full((2,), 3.0)).item(), abs=tol
    )


def test_ssim_torch_errors():
    x = torch.rand(2, 9, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_torch(x, x[:, :8], 1.0)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, \*D\)"):
        ssim_torch(x[0], x[0], 1.0)
    with pytest.raises(ValueError, match="smaller than the 7x7 SSIM window"):
        ssim_torch(x[:, :6], x[:, :6], 1.0)
    with pytest.raises(TypeError, match="real floating"):
        ssim_torch(x.to(torch.complex128), x.to(torch.complex128), 1.0)
    with pytest.raises(TypeError, match="real floating"):
        ssim_torch(x.long(), x.long(), 1.0)
    with pytest.raises(TypeError, match="dtypes differ"):
        ssim_torch(x, x.float(), 1.0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        ssim_torch(x.numpy(), x, 1.0)
    with pytest.raises(ValueError, match="data_range must be a scalar or shape \\(2,\\)"):
        ssim_torch(x, x, torch.ones(3))
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="data_range must be finite and > 0"):
            ssim_torch(x, x, bad)
    with pytest.raises(ValueError, match="win_size must be odd"):
        SSIMLoss(win_size=6)
