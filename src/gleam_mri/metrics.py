"""Image-quality metrics with fastMRI's exact conventions: NMSE, PSNR and SSIM.

Numpy metrics work per volume: ``gt`` and ``pred`` are real arrays ``(S, H, W)`` holding the
slices of a 2D volume, the ``Z`` slices of a 3D volume or the ``T`` frames of a cine series (a
single ``(H, W)`` image counts as one slice). As in ``fastmri.evaluate``:

- ``NMSE = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
- ``PSNR = 10 log10(maxval^2 / mean((gt - pred)^2))`` over the whole volume;
- ``SSIM`` is computed per 2D slice and averaged over slices;
- ``maxval`` (the data range) defaults to ``gt.max()`` of the whole volume.

SSIM follows scikit-image's ``structural_similarity`` defaults: a 7x7 uniform window,
``K1 = 0.01``, ``K2 = 0.03``, sample covariance (``N / (N - 1)``) and the mean of the SSIM map over
the region where the window fits entirely inside the image (skimage's map cropped by
``(win - 1) // 2`` on each side). Numpy metrics always compute in float64.

:func:`ssim_torch` and :class:`SSIMLoss` are the same SSIM in torch, differentiable, for training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
METRIC_NAMES = ("NMSE", "PSNR", "SSIM")


# ----------------------------------------------------------------------------- input checks


def _check_win(win_size: int, k1: float, k2: float) -> None:
    if isinstance(win_size, bool) or not isinstance(win_size, int):
        raise TypeError(f"win_size must be an int, got {type(win_size).__name__}")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    if not (k1 > 0 and k2 > 0):
        raise ValueError(f"k1 and k2 must be positive, got k1={k1}, k2={k2}")


def _as_volume(name: str, a: np.ndarray) -> np.ndarray:
    """Return ``a`` as a float64 ``(S, H, W)`` array; a 2D ``(H, W)`` image becomes one slice."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({a.dtype}); metrics take real (magnitude) images")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    elif a.ndim != 3:
        raise ValueError(
            f"{name} must be an image (H, W) or a volume (S, H, W), got shape {a.shape}"
        )
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt_arr = _as_volume("gt", gt)
    pred_arr = _as_volume("pred", pred)
    if gt_arr.shape != pred_arr.shape:
        raise ValueError(f"gt and pred shapes differ: {np.shape(gt)} vs {np.shape(pred)}")
    if gt_arr.size == 0:
        raise ValueError(f"gt and pred are empty (shape {np.shape(gt)})")
    return gt_arr, pred_arr


def _data_range(gt: np.ndarray, maxval: float | None) -> float:
    """``maxval`` if given, else ``gt.max()``; must be finite and positive."""
    value = float(gt.max()) if maxval is None else float(maxval)
    if not (math.isfinite(value) and value > 0):
        origin = "maxval" if maxval is not None else "gt.max() (the default maxval)"
        raise ValueError(f"{origin} must be finite and > 0, got {value}")
    return value


# ----------------------------------------------------------------------------- numpy metrics


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` of real ``(S, H, W)`` or ``(H, W)`` arrays."""
    gt, pred = _pair(gt, pred)
    denom = float(np.sum(gt * gt))
    if denom == 0.0:
        raise ValueError("NMSE is undefined: gt is all zeros")
    return float(np.sum((gt - pred) ** 2)) / denom


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """PSNR in dB over the whole volume; ``maxval`` (data range) defaults to ``gt.max()``.

    Equals ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=maxval)``; returns
    ``inf`` (without a warning) when ``pred == gt``.
    """
    gt, pred = _pair(gt, pred)
    data_range = _data_range(gt, maxval)
    mse = float(np.mean((gt - pred) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _ssim_slice(
    x: np.ndarray, y: np.ndarray, data_range: float, win_size: int, k1: float, k2: float
) -> float:
    """Mean SSIM of two float64 ``(H, W)`` images over the valid window positions."""
    n = win_size**2
    cov_norm = n / (n - 1)
    pad = (win_size - 1) // 2
    valid = (slice(pad, x.shape[0] - pad), slice(pad, x.shape[1] - pad))

    def box(a: np.ndarray) -> np.ndarray:
        return uniform_filter(a, size=win_size)[valid]

    return float(np.mean(_ssim_map(box, x, y, cov_norm, k1 * data_range, k2 * data_range)))


def _ssim_map(box, x, y, cov_norm: float, l1, l2):
    """SSIM map from a local-mean function ``box`` (numpy or torch arrays alike).

    ``l1 = K1 * data_range`` and ``l2 = K2 * data_range``; variances use the sample covariance
    factor ``cov_norm = N / (N - 1)``, as scikit-image does.
    """
    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    c1, c2 = l1**2, l2**2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(
    gt: np.ndarray,
    pred: np.ndarray,
    maxval: float | None = None,
    *,
    win_size: int = WIN_SIZE,
    k1: float = K1,
    k2: float = K2,
) -> float:
    """SSIM per 2D slice of ``(S, H, W)`` (or one ``(H, W)``) arrays, averaged over slices.

    ``maxval`` (data range) defaults to ``gt.max()`` of the whole volume, as in fastMRI. Each
    slice equals ``skimage.metrics.structural_similarity(gt[s], pred[s], data_range=maxval)``.
    """
    _check_win(win_size, k1, k2)
    gt, pred = _pair(gt, pred)
    if min(gt.shape[-2:]) < win_size:
        raise ValueError(
            f"images of size {gt.shape[-2:]} are smaller than the {win_size}x{win_size} SSIM window"
        )
    data_range = _data_range(gt, maxval)
    total = sum(
        _ssim_slice(g, p, data_range, win_size, k1, k2) for g, p in zip(gt, pred, strict=True)
    )
    return total / gt.shape[0]


def volume_metrics(
    gt: np.ndarray, pred: np.ndarray, maxval: float | None = None
) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume ``(S, H, W)`` (or image ``(H, W)``), as a dict."""
    return {
        "NMSE": nmse(gt, pred),
        "PSNR": psnr(gt, pred, maxval),
        "SSIM": ssim(gt, pred, maxval),
    }


class MetricsAccumulator:
    """Collects per-volume metrics and reports their mean and standard deviation.

    Like ``fastmri.evaluate.Metrics`` (sample standard deviation, ``ddof=1``), without runstats.
    Every pushed volume is kept in :attr:`records` (a list of dicts, with its ``name`` if given).
    """

    def __init__(self, names: tuple[str, ...] = METRIC_NAMES) -> None:
        if not names:
            raise ValueError("MetricsAccumulator needs at least one metric name")
        self.names = tuple(names)
        self.records: list[dict[str, float | str]] = []

    def push(
        self,
        gt: np.ndarray,
        pred: np.ndarray,
        maxval: float | None = None,
        name: str | None = None,
    ) -> dict[str, float]:
        """Compute :func:`volume_metrics` of one volume, store and return them."""
        values = volume_metrics(gt, pred, maxval)
        self.add(values, name=name)
        return values

    def add(self, values: Mapping[str, float], name: str | None = None) -> None:
        """Store already computed metrics of one volume (must hold every name in ``names``)."""
        missing = [k for k in self.names if k not in values]
        if missing:
            raise ValueError(f"metrics {missing} are missing from {sorted(values)}")
        record: dict[str, float | str] = {k: float(values[k]) for k in self.names}
        if name is not None:
            record["name"] = name
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def _column(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.records], dtype=np.float64)

    def means(self) -> dict[str, float]:
        """Mean of each metric over the volumes pushed so far (NaN when none)."""
        if not self.records:
            return dict.fromkeys(self.names, math.nan)
        return {k: float(self._column(k).mean()) for k in self.names}

    def stds(self) -> dict[str, float]:
        """Sample standard deviation (``ddof=1``) of each metric (NaN for fewer than 2 volumes)."""
        if len(self.records) < 2:
            return dict.fromkeys(self.names, math.nan)
        return {k: float(self._column(k).std(ddof=1)) for k in self.names}

    def __repr__(self) -> str:
        means, stds = self.means(), self.stds()
        return " ".join(f"{k} = {means[k]:.4g} +/- {2 * stds[k]:.4g}" for k in sorted(self.names))


# ----------------------------------------------------------------------------- torch SSIM


def ssim_torch(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float | torch.Tensor,
    *,
    win_size: int = WIN_SIZE,
    k1: float = K1,
    k2: float = K2,
) -> torch.Tensor:
    """Differentiable SSIM per batch item, the same definition as :func:`ssim`.

    Args:
        x, y: real floating tensors ``(B, H, W)`` or ``(B, *D)`` of one shape and dtype; the
            leading axes of ``D`` are folded into 2D slices (``Z`` of 3D, ``T`` of cine).
        data_range: a positive float, or a tensor ``(B,)`` (or scalar) with one range per item.
    Returns:
        ``(B,)`` tensor of ``x.dtype``: the mean over each item's slices of the slice SSIM.
    """
    _check_win(win_size, k1, k2)
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a real floating tensor, got {t.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise TypeError(f"x and y dtypes differ: {x.dtype} vs {y.dtype}")
    if x.ndim < 3:
        raise ValueError(f"x must be (B, H, W) or (B, *D), got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(
            f"images of size {tuple(x.shape[-2:])} are smaller than the "
            f"{win_size}x{win_size} SSIM window"
        )
    batch = x.shape[0]
    if isinstance(data_range, torch.Tensor):
        if data_range.numel() not in (1, batch) or data_range.ndim > 1:
            raise ValueError(
                f"data_range must be a scalar or shape ({batch},), got {tuple(data_range.shape)}"
            )
        rng = data_range.to(dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    else:
        if not (math.isfinite(float(data_range)) and float(data_range) > 0):
            raise ValueError(f"data_range must be finite and > 0, got {data_range}")
        rng = torch.tensor(float(data_range), dtype=x.dtype, device=x.device)

    # (B, *D) -> (B, S, H, W): one channel per slice, pooled independently.
    h, w = x.shape[-2:]
    xs = x.reshape(batch, -1, h, w)
    ys = y.reshape(batch, -1, h, w)
    n = win_size**2
    cov_norm = n / (n - 1)

    def box(a: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(a, kernel_size=win_size, stride=1)

    ssim_map = _ssim_map(box, xs, ys, cov_norm, k1 * rng, k2 * rng)
    # Every slice has the same number of valid positions, so this is the mean of slice SSIMs.
    return ssim_map.mean(dim=(1, 2, 3))


class SSIMLoss(torch.nn.Module):
    """``1 - SSIM`` averaged over the batch, a training loss (see :func:`ssim_torch`).

    ``forward(pred, target, data_range=None)`` takes real ``(B, *D)`` tensors; ``data_range`` is
    a float or ``(B,)`` tensor and defaults to each item's ``target`` maximum (detached).
    """

    def __init__(self, win_size: int = WIN_SIZE, k1: float = K1, k2: float = K2) -> None:
        super().__init__()
        _check_win(win_size, k1, k2)
        self.win_size, self.k1, self.k2 = win_size, k1, k2

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        data_range: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar loss ``1 - mean_b SSIM(pred_b, target_b)``."""
        if data_range is None:
            if not isinstance(target, torch.Tensor) or target.ndim < 1:
                raise ValueError("target must be a (B, *D) tensor")
            # an all-zero target would give a zero range (NaN loss); clamp without a GPU sync
            peak = target.detach().reshape(target.shape[0], -1).amax(dim=1)
            data_range = peak.clamp_min(torch.finfo(peak.dtype).eps)
        value = ssim_torch(pred, target, data_range, win_size=self.win_size, k1=self.k1, k2=self.k2)
        return 1 - value.mean()

    def extra_repr(self) -> str:
        return f"win_size={self.win_size}, k1={self.k1}, k2={self.k2}"
