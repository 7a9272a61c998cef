"""Synthetic MR phantoms with structure and texture: a head slice, a head volume, a beating heart.

Every phantom is a magnitude image, float32 in ``[0, 1]``: its brightest object voxels sit at 1
(the 99.9th percentile inside the body is mapped to 1) and the background outside the body is
exactly 0. Tissue classes have soft edges (about one pixel), and the images carry a smooth
bias-like intensity variation, band-limited random texture, thin vessels and, in the head, small
round lesions. Every random choice (contrast, shape, folding, texture, lesions, vessels) comes
from the ``np.random.Generator`` passed in: the same seed gives the same image, another seed a
different but plausible one.

Coordinates are isotropic: one unit is half the smaller in-plane size ``min(H, W) / 2``, so a 3D
volume ``(Z, H, W)`` with ``Z < H`` is a slab through the head, as in a slab-selective 3D scan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Tissue intensities of three common contrasts (jittered per phantom).
_HEAD_CONTRASTS: dict[str, dict[str, float]] = {
    "t1": {"scalp": 0.85, "skull": 0.06, "csf": 0.10, "gm": 0.50, "wm": 0.78, "nuclei": 0.60,
           "vessel": 0.95, "lesion": 0.30},
    "t2": {"scalp": 0.55, "skull": 0.04, "csf": 1.00, "gm": 0.62, "wm": 0.42, "nuclei": 0.50,
           "vessel": 0.05, "lesion": 0.90},
    "pd": {"scalp": 0.80, "skull": 0.05, "csf": 0.95, "gm": 0.78, "wm": 0.58, "nuclei": 0.72,
           "vessel": 0.10, "lesion": 0.95},
}  # fmt: skip
# Balanced SSFP cine: bright blood and fat, dark myocardium and lungs.
_TORSO_CONTRAST: dict[str, float] = {
    "fat": 0.85, "muscle": 0.32, "soft": 0.42, "lung": 0.04, "lung_vessel": 0.35, "blood": 0.92,
    "myocardium": 0.28, "bone": 0.50, "csf": 0.85, "liver": 0.38,
}  # fmt: skip


def _check_shape(shape: Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) != ndim or not all(isinstance(s, (int, np.integer)) for s in shape):
        raise ValueError(f"{name} must be a tuple of {ndim} ints, got {shape!r}")
    if min(shape[-2:]) < 8 or min(shape) < 1:
        raise ValueError(f"{name} needs H, W >= 8 and positive sizes, got {shape}")
    return tuple(int(s) for s in shape)


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _coords(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Open (broadcastable) isotropic grids, one per axis, centred at ``n // 2``."""
    unit = min(shape[-2:]) / 2
    grids = []
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        grids.append(((np.arange(n) - n // 2) / unit).astype(np.float32).reshape(view))
    return grids


def _field(
    shape: tuple[int, ...], rng: np.random.Generator, cutoff: float, highpass: float = 0.0
) -> np.ndarray:
    """Gaussian random field with zero mean and unit std, float32 ``shape``.

    Its spectrum is a Gaussian of width ``cutoff`` cycles per unit, with the part below
    ``highpass`` cycles per unit removed (band-limited texture).
    """
    unit = min(shape[-2:]) / 2
    spectrum = np.fft.rfftn(rng.standard_normal(shape, dtype=np.float32))
    freqs = [np.fft.fftfreq(n, d=1 / unit) for n in shape[:-1]]
    freqs.append(np.fft.rfftfreq(shape[-1], d=1 / unit))
    f2 = sum(np.square(f).reshape([-1 if i == a else 1 for i in range(len(shape))])
             for a, f in enumerate(freqs))  # fmt: skip
    filt = np.exp(-0.5 * f2 / cutoff**2)
    if highpass > 0:
        filt *= 1 - np.exp(-0.5 * f2 / highpass**2)
    out = np.fft.irfftn(spectrum * filt, s=shape, axes=range(len(shape)))
    out -= out.mean()
    return (out / (out.std() + 1e-12)).astype(np.float32)


def _inside(dist: np.ndarray | float, width: float) -> np.ndarray:
    """Soft indicator of ``dist < 0``: a smoothstep ramp of ``width`` with compact support."""
    t = np.clip(0.5 - np.asarray(dist, dtype=np.float32) / width, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _blend(img: np.ndarray, value: float, alpha: np.ndarray) -> np.ndarray:
    """Paint ``value`` over ``img`` with soft opacity ``alpha`` in ``[0, 1]``."""
    return img + alpha * (value - img)


def _ellipse_dist(
    y: np.ndarray,
    x: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float = 0.0,
    z: np.ndarray | float = 0.0,
    z_axis: float = np.inf,
) -> np.ndarray:
    """Approximate signed distance (units) to a rotated ellipse, or ellipsoid when ``z`` varies."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - center[0], x - center[1]
    u, v = c * dy + s * dx, -s * dy + c * dx
    r = np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (np.asarray(z) / z_axis) ** 2)
    return (r - 1) * min(axes)


def _jitter(table: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    return {k: v * float(rng.uniform(0.92, 1.08)) for k, v in table.items()}


def _texture_and_bias(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Multiplicative tissue texture (mid and fine scale) times a smooth bias field."""
    px = 2 / min(shape[-2:])
    mid = rng.uniform(0.03, 0.06) * _field(shape, rng, 6.0)
    fine = rng.uniform(0.04, 0.07) * _field(shape, rng, 0.35 / px, highpass=0.12 / px)
    bias = rng.uniform(0.08, 0.15) * _field(shape, rng, 0.5)
    return (1 + mid + fine) * np.exp(bias)


def _normalise(img: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Scale so the 99.9th percentile inside ``body`` is 1, clip to ``[0, 1]``, zero outside."""
    inside = body > 0.5
    scale = np.quantile(img[inside], 0.999) if inside.any() else img.max()
    out = np.clip(img / max(float(scale), 1e-12), 0.0, 1.0) * (body > 0)
    return out.astype(np.float32)


def _level_distance(field: np.ndarray, px: float) -> np.ndarray:
    """Approximate distance (units) to the zero level set of a smooth field: ``|f| / |grad f|``."""
    grads = [np.gradient(field, px, axis=a) for a, n in enumerate(field.shape) if n > 1]
    norm = np.sqrt(sum(g * g for g in grads))
    return np.abs(field) / np.maximum(norm, 1e-6)


def _lines(
    shape: tuple[int, ...], rng: np.random.Generator, cutoff: float, n_fields: int, px: float
) -> np.ndarray:
    """Distance (units) to thin random curves: zero level sets of ``n_fields`` random fields.

    In 2D one level set gives curves; in 3D the intersection of two gives tubes.
    """
    d2 = sum(_level_distance(_field(shape, rng, cutoff), px) ** 2 for _ in range(n_fields))
    return np.sqrt(d2)


def _head(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A T1-, T2- or PD-weighted head: a 2D slice at a random level or a 3D volume."""
    ndim = len(shape)
    grids = _coords(shape)
    y, x = grids[-2], grids[-1]
    z = grids[0] if ndim == 3 else np.float32(rng.uniform(-0.35, 0.35))
    px = 2 / min(shape[-2:])
    w = 1.2 * px
    name = ("t1", "t2", "pd")[rng.integers(3)]
    c = _jitter(_HEAD_CONTRASTS[name], rng)

    ay = rng.uniform(0.80, 0.90)
    ax, az = ay * rng.uniform(0.78, 0.88), rng.uniform(0.85, 0.95)
    angle = rng.uniform(-0.2, 0.2)
    cy, cx = rng.uniform(-0.04, 0.04, size=2)
    zc = z - (rng.uniform(-0.2, 0.2) if ndim == 3 else 0.0)
    wobble = 1 + 0.015 * _field(shape, rng, 1.5)
    r = (_ellipse_dist(y, x, (cy, cx), (ay, ax), angle, zc, az) / min(ay, ax) + 1) * wobble

    def layer(edge: float) -> np.ndarray:
        return _inside((r - edge) * ay, w)

    t_skull = 1 - rng.uniform(0.05, 0.07)
    t_csf = t_skull - rng.uniform(0.035, 0.05)
    t_brain = t_csf - rng.uniform(0.015, 0.03)
    head = layer(1.0)
    img = head * c["scalp"]
    img = _blend(img, c["skull"], layer(t_skull))
    img = _blend(img, c["csf"], layer(t_csf))
    brain = layer(t_brain)
    img = _blend(img, c["gm"], brain)

    # Gyri: a cortical ribbon, CSF-filled sulci (random curves, tapering with depth) lined by
    # grey matter, white matter in the gyral cores and below.
    depth = (t_brain - r) * ay
    to_sulcus = _lines(shape, rng, rng.uniform(3.5, 4.5), 1, px)
    sulcus_depth = rng.uniform(0.10, 0.15) * (1 + 0.3 * _field(shape, rng, 2.0))
    ribbon = rng.uniform(0.025, 0.035)
    gm_lining = _inside(to_sulcus - ribbon, w) * _inside(depth - sulcus_depth - ribbon, w)
    wm = brain * _inside(ribbon - depth, w) * (1 - gm_lining)
    img = _blend(img, c["wm"], wm)
    sulci = brain * _inside(depth - sulcus_depth, 0.03) * _inside(to_sulcus - 0.5 * px, w)
    img = _blend(img, c["csf"], sulci)
    # Interhemispheric fissure (anterior and posterior).
    ca, sa = np.cos(angle), np.sin(angle)
    along, across = ca * (y - cy) + sa * (x - cx), -sa * (y - cy) + ca * (x - cx)
    fissure = brain * np.exp(-((across / (1.5 * px)) ** 2)) * _inside(0.45 * ay - np.abs(along), w)
    img = _blend(img, c["csf"], fissure)

    # Deep grey nuclei and the lateral ventricles, mirrored about the midline.
    vz = z - rng.uniform(-0.1, 0.15) if ndim == 3 else z
    size = rng.uniform(0.7, 1.4)

    def mirrored(dy: float, dx: float) -> tuple[float, float]:
        return (cy + ca * dy - sa * dx, cx + sa * dy + ca * dx)

    for side in (-1, 1):
        nuc = _ellipse_dist(y, x, mirrored(0.03, side * 0.2), (0.12, 0.06), angle - side * 0.3,
                            vz, 0.15)  # fmt: skip
        img = _blend(img, c["nuclei"], brain * _inside(nuc, 2 * w))
        vent = _ellipse_dist(y, x, mirrored(-0.04, side * 0.07), (0.20 * size, 0.045 * size),
                             angle - side * 0.35, vz, 0.22)  # fmt: skip
        img = _blend(img, c["csf"], brain * _inside(vent, w))

    # Small round lesions in white matter.
    candidates = np.flatnonzero(wm > 0.95)
    for _ in range(int(rng.integers(0, 6)) if candidates.size else 0):
        idx = np.unravel_index(rng.choice(candidates), shape)
        dist = np.sqrt(sum((g - g.flat[i]) ** 2 for g, i in zip(grids, idx, strict=True)))
        img = _blend(img, c["lesion"], _inside(dist - rng.uniform(0.015, 0.04), 2 * w))

    # Sparse thin vessels inside the skull.
    vessels = _inside(_lines(shape, rng, 2.0, ndim - 1, px) - 0.4 * px, w)
    vessels *= _inside(1 - _field(shape, rng, 1.5), 0.5) * layer(t_csf)
    img = _blend(img, c["vessel"], vessels * rng.uniform(0.6, 1.0))
    return _normalise(img * _texture_and_bias(shape, rng), head)


def phantom_2d(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A head-like axial slice with texture, float32 ``(H, W)`` in ``[0, 1]``.

    The contrast (T1, T2 or PD weighted), head shape, slice level, cortical folding, ventricle
    size, lesions, vessels, texture and bias field are all drawn from ``rng``.
    """
    return _head(_check_shape(shape, 2, "shape"), _check_rng(rng))


def phantom_3d(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A head-like volume with 3D texture and vessels, float32 ``(Z, H, W)`` in ``[0, 1]``.

    Voxels are isotropic, so slices vary smoothly along ``Z``; ``Z < H`` gives a slab.
    """
    return _head(_check_shape(shape, 3, "shape"), _check_rng(rng))


def _cardiac_cycle(phase: np.ndarray) -> np.ndarray:
    """Contraction ``s`` in ``[0, 1]`` over the cycle phase in ``[0, 1)``: 0 at end-diastole.

    Systole (phase 0..0.3) contracts, early diastole (0.3..0.7) relaxes, then diastasis rests.
    """
    systole = 0.5 * (1 - np.cos(np.pi * np.clip(phase / 0.3, 0, 1)))
    relax = 0.5 * (1 + np.cos(np.pi * np.clip((phase - 0.3) / 0.4, 0, 1)))
    return np.where(phase < 0.3, systole, relax)


def cine_phantom(
    n_frames: int,
    shape: tuple[int, int],
    rng: np.random.Generator,
    n_beats: float = 1.0,
) -> np.ndarray:
    """A beating-heart short-axis cine (bSSFP-like), float32 ``(T, H, W)`` in ``[0, 1]``.

    A torso (fat, muscle, lungs, spine, aorta, liver) surrounds a heart whose left-ventricular
    blood pool shrinks in systole while its myocardial ring thickens (wall area is conserved),
    with a right ventricle and papillary muscles. ``n_beats`` cardiac cycles span the ``T`` frames
    (1: one gated cycle); frame 0 is end-diastole. Everything outside the heart is static.
    """
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    if not np.isfinite(n_beats) or n_beats <= 0:
        raise ValueError(f"n_beats must be a positive number, got {n_beats!r}")
    shape = _check_shape(shape, 2, "shape")
    rng = _check_rng(rng)
    y, x = _coords(shape)
    px = 2 / min(shape)
    w = 1.2 * px
    c = _jitter(_TORSO_CONTRAST, rng)

    bx = rng.uniform(0.85, 0.95)
    by = bx * rng.uniform(0.62, 0.75)
    wobble = 0.01 * _field(shape, rng, 1.5)
    body_d = _ellipse_dist(y, x, (0.0, 0.0), (by, bx)) + wobble
    body = _inside(body_d, w)
    fat = rng.uniform(0.03, 0.07)
    img = body * c["fat"]
    img = _blend(img, c["muscle"], _inside(body_d + fat, w))
    img = _blend(img, c["soft"], _inside(body_d + fat + 0.04, w))
    liver = _ellipse_dist(y, x, (0.35 * by, -0.45 * bx), (0.45 * by, 0.4 * bx), 0.3)
    img = _blend(img, c["liver"], _inside(body_d + fat + 0.04, w) * _inside(liver, 2 * w))

    # Lungs with faint vessels, spine with canal, descending aorta.
    hy, hx = rng.uniform(-0.2, -0.05) * by, rng.uniform(0.08, 0.2) * bx
    lung_vessels = c["lung_vessel"] * _inside(_lines(shape, rng, 3.0, 1, px) - 0.3 * px, w)
    lung_vessels *= _inside(-_field(shape, rng, 2.0), 0.5)
    for side in (-1, 1):
        lung = _ellipse_dist(y, x, (-0.1 * by, side * 0.45 * bx), (0.62 * by, 0.3 * bx), side * 0.2)
        img = _blend(img, c["lung"] + lung_vessels, _inside(lung, 2 * w))
    spine_y = 0.62 * by
    img = _blend(img, c["bone"], _inside(np.hypot(y - spine_y, x) - 0.075, w))
    img = _blend(img, c["csf"], _inside(np.hypot(y - spine_y - 0.12, x) - 0.035, w))
    aorta = np.hypot(y - spine_y + 0.08, x + 0.12) - rng.uniform(0.035, 0.05)
    img = _blend(img, c["blood"], _inside(aorta, w))

    # Heart geometry at end-diastole.
    r_blood0 = rng.uniform(0.10, 0.13) * bx
    r_out0 = r_blood0 + rng.uniform(0.045, 0.06) * bx
    wall_area = r_out0**2 - r_blood0**2
    squeeze = rng.uniform(0.25, 0.35)
    tilt = rng.uniform(-0.4, 0.4)
    ca, sa = np.cos(tilt), np.sin(tilt)
    rv_center = (hy - sa * 0.9 * r_out0, hx - ca * 0.9 * r_out0)
    lv = np.hypot(y - hy, x - hx)
    rv0 = _ellipse_dist(y, x, rv_center, (1.05 * r_out0, 1.45 * r_out0), tilt)
    peri = np.minimum(lv - r_out0, rv0 - 0.015) - rng.uniform(0.015, 0.03)
    img = _blend(img, c["fat"] * rng.uniform(0.6, 0.9), _inside(peri, 2 * w))
    static = img
    pap_angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, rng.uniform(1.8, 2.6)])
    frames = np.empty((n_frames, *shape), dtype=np.float32)
    phases = np.mod(n_beats * np.arange(n_frames) / n_frames, 1.0)
    for t, s in enumerate(_cardiac_cycle(phases)):
        r_blood = r_blood0 * (1 - squeeze * s)
        r_out = np.sqrt(r_blood**2 + wall_area)
        rv_axes = (r_out0 * (1.05 - 0.15 * s), r_out0 * (1.45 - 0.2 * s))
        rv = _ellipse_dist(y, x, rv_center, rv_axes, tilt)
        img = _blend(static, c["myocardium"], _inside(rv - 0.015, w))
        img = _blend(img, c["blood"], _inside(rv, w))
        img = _blend(img, c["myocardium"], _inside(lv - r_out, w))
        img = _blend(img, c["blood"], _inside(lv - r_blood, w))
        for a in pap_angles:
            py, px_ = hy + 0.75 * r_blood * np.sin(a), hx + 0.75 * r_blood * np.cos(a)
            papillary = np.hypot(y - py, x - px_) - 0.2 * r_blood
            img = _blend(img, c["myocardium"], _inside(papillary, w))
        frames[t] = img
    return _normalise(frames * _texture_and_bias(shape, rng), np.broadcast_to(body, frames.shape))
