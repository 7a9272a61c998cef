"""Undersampling masks: fastMRI-compatible 1D Cartesian masks, cine masks and a factory.

Two interfaces live here.

1. The fastMRI interface (:class:`RandomMaskFunc`, :class:`EquispacedMaskFractionFunc`): called
   with a *real-view* k-space shape ``(..., H, W, 2)`` whose columns are ``shape[-2]``; returns
   ``(mask, num_low_frequencies)`` with ``mask`` float32 of shape ``(1, ..., 1, W, 1)``. For the
   same arguments and seeds they return exactly the masks of ``fastmri.data.subsample`` (same
   ``np.random.RandomState`` draws in the same order).
2. The project's :class:`MaskFunction` protocol, for complex k-space of one sample ``(C, *D)``:
   ``mask_fn(kspace_shape, seed=None)`` returns a float32 tensor of zeros and ones with shape
   ``(1, *D)`` except size 1 along the readout axis ``H`` (axis ``-2``), so it broadcasts to
   ``(C, *D)``. Implemented by :class:`CartesianMask`, :class:`CineMask` and
   :class:`~gleam_mri.physics.poisson.PoissonDiscMask`; :func:`build_mask_func` builds any of them
   from a plain config dict.

A ``seed`` given to a call makes that call reproducible and leaves the object's own random state
untouched; with ``seed=None`` the object's state (seeded by its constructor ``seed``) advances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from gleam_mri.physics.poisson import PoissonDiscMask, center_slice, check_acceleration

__all__ = [
    "CartesianMask",
    "CineMask",
    "EquispacedMaskFractionFunc",
    "FastMRIMaskFunc",
    "MaskFunction",
    "PoissonDiscMask",
    "RandomMaskFunc",
    "acceleration_of",
    "build_mask_func",
    "center_slice",
]

Seed = int | tuple[int, ...] | None


@contextlib.contextmanager
def _seeded(rng: np.random.RandomState, seed: Seed) -> Iterator[None]:
    """Reseed ``rng`` for the block and restore its previous state afterwards (if seed given)."""
    if seed is None:
        yield
        return
    saved = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(saved)


class FastMRIMaskFunc:
    """Base of the fastMRI-compatible 1D masks over the columns ``shape[-2]`` of real-view k-space.

    Args:
        center_fractions: fractions of the columns kept fully sampled around the centre, in [0, 1].
        accelerations: nominal undersampling factors, each > 1; same length as
            ``center_fractions`` unless ``allow_any_combination``.
        allow_any_combination: draw fraction and acceleration independently.
        seed: seed of the internal ``np.random.RandomState``.
    """

    def __init__(
        self,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        allow_any_combination: bool = False,
        seed: Seed = None,
    ) -> None:
        center_fractions, accelerations = list(center_fractions), list(accelerations)
        if not center_fractions or not accelerations:
            raise ValueError("center_fractions and accelerations must not be empty")
        if len(center_fractions) != len(accelerations) and not allow_any_combination:
            raise ValueError(
                f"got {len(center_fractions)} center_fractions but {len(accelerations)} "
                "accelerations; they must have the same length unless allow_any_combination=True"
            )
        for fraction in center_fractions:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"center fraction {fraction} must lie in [0, 1]")
        for acceleration in accelerations:
            check_acceleration(acceleration)
        self.center_fractions = center_fractions
        self.accelerations = accelerations
        self.allow_any_combination = allow_any_combination
        self.rng = np.random.RandomState(seed)

    def __call__(
        self, shape: Sequence[int], offset: int | None = None, seed: Seed = None
    ) -> tuple[torch.Tensor, int]:
        """Sample a mask for real-view k-space of shape ``(..., H, W, 2)``.

        Args:
            shape: real-view k-space shape with at least 3 axes; the columns are ``shape[-2]``.
            offset: first sampled outer column (equispaced masks); drawn at random when ``None``.
            seed: seed for this call only (the internal state is restored afterwards).

        Returns:
            ``(mask, num_low_frequencies)``: float32 mask of shape ``(1, ..., 1, W, 1)`` (same
            rank as ``shape``) and the number of fully sampled centre columns.

        Raises:
            ValueError: a shape of rank < 3 or without columns, a negative offset, a centre that
                fills the matrix, or a mask that samples nothing.
        """
        if len(shape) < 3 or int(shape[-2]) < 1:
            raise ValueError(
                f"real-view k-space shape needs at least 3 axes and columns, got {tuple(shape)}"
            )
        num_cols = int(shape[-2])
        if offset is not None and offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        with _seeded(self.rng, seed):
            fraction, acceleration = self._choose()
            num_low = round(num_cols * fraction)
            if num_low >= num_cols:
                raise ValueError(
                    f"centre of {num_low} columns (fraction {fraction}) fills the whole matrix "
                    f"of {num_cols} columns"
                )
            outer = self._outer_columns(num_cols, acceleration, offset, num_low)
        profile = np.zeros(num_cols, dtype=np.float32)
        profile[center_slice(num_cols, num_low)] = 1.0
        profile = np.maximum(profile, outer.astype(np.float32))
        if not profile.any():
            raise ValueError(
                f"mask samples no column (columns={num_cols}, centre={num_low}, "
                f"acceleration={acceleration}); raise the centre fraction or lower the acceleration"
            )
        mask_shape = [1] * len(shape)
        mask_shape[-2] = num_cols
        return torch.from_numpy(profile.reshape(mask_shape)), int(num_low)

    def _choose(self) -> tuple[float, float]:
        """Draw (centre fraction, acceleration) with fastMRI's RandomState calls."""
        if self.allow_any_combination:
            fraction = self.rng.choice(self.center_fractions)
            return fraction, self.rng.choice(self.accelerations)
        index = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[index], self.accelerations[index]

    def _outer_columns(
        self, num_cols: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        """Boolean or 0/1 array ``(num_cols,)`` of the sampled columns outside the centre."""
        raise NotImplementedError


class RandomMaskFunc(FastMRIMaskFunc):
    """fastMRI's random mask: centre columns plus each other column with a fixed probability.

    The probability ``(W / R - W_low) / (W - W_low)`` makes the expected number of sampled
    columns ``W / R`` (when the centre alone exceeds ``W / R``, only the centre is sampled).
    ``offset`` is ignored. See :class:`FastMRIMaskFunc` for the arguments.
    """

    def _outer_columns(
        self, num_cols: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        probability = (num_cols / acceleration - num_low) / (num_cols - num_low)
        return self.rng.uniform(size=num_cols) < probability


class EquispacedMaskFractionFunc(FastMRIMaskFunc):
    """fastMRI's equispaced mask whose spacing is adjusted so ``W / R`` columns are sampled.

    Outer columns are ``round(offset + k * s)`` with the (non-integer) spacing
    ``s = R (W - W_low) / (W - R W_low)``; like fastMRI they may therefore be unevenly spaced.
    When the centre alone reaches the acceleration (``W_low * R >= W``) only the centre is
    sampled, as fastMRI does for a given offset (it fails without one: there this class departs
    from fastMRI and draws nothing). See :class:`FastMRIMaskFunc` for the arguments.
    """

    def _outer_columns(
        self, num_cols: int, acceleration: float, offset: int | None, num_low: int
    ) -> np.ndarray:
        outer = np.zeros(num_cols, dtype=bool)
        if num_low * acceleration >= num_cols:  # the centre alone reaches the acceleration
            return outer
        spacing = (acceleration * (num_low - num_cols)) / (num_low * acceleration - num_cols)
        if offset is None:
            offset = self.rng.randint(0, high=round(spacing))
        columns = np.rint(np.arange(offset, num_cols - 1, spacing)).astype(np.int64)
        outer[columns] = True
        return outer


class MaskFunction(Protocol):
    """Protocol of the project's mask functions.

    ``__call__(kspace_shape, seed=None)``: ``kspace_shape`` is ``(C, *D)`` of one complex sample;
    returns float32 zeros and ones of shape ``(1, *D)`` with size 1 along ``H`` (axis -2).
    """

    def __call__(self, kspace_shape: Sequence[int], seed: int | None = None) -> torch.Tensor: ...


def _check_rank(kspace_shape: Sequence[int], ranks: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Validate ``(C, *D)`` with ``len(D)`` in ``ranks``; return ``D``."""
    shape = tuple(int(n) for n in kspace_shape)
    if len(shape) - 1 not in ranks or any(n < 1 for n in shape):
        raise ValueError(
            f"{name} needs k-space shape (C, *D) with D of rank {' or '.join(map(str, ranks))} "
            f"and positive sizes, got {shape}"
        )
    return shape[1:]


class CartesianMask:
    """1D Cartesian undersampling along ``W``, identical to fastMRI's masks for the same seed.

    Args:
        kind: ``"random"`` (:class:`RandomMaskFunc`) or ``"equispaced"``
            (:class:`EquispacedMaskFractionFunc`).
        center_fractions, accelerations, allow_any_combination, seed: as in fastMRI.

    Call with ``(C, H, W)`` -> mask ``(1, 1, W)``; its profile equals fastMRI's mask for the
    real-view shape ``(C, H, W, 2)`` and the same seed. With ``(C, Z, H, W)`` (3D or cine) the
    same column pattern is repeated over the leading axis -> ``(1, Z, 1, W)``; use
    :class:`CineMask` or :class:`PoissonDiscMask` to vary it along that axis.
    """

    kinds: ClassVar[dict[str, type[FastMRIMaskFunc]]] = {
        "random": RandomMaskFunc,
        "equispaced": EquispacedMaskFractionFunc,
    }

    def __init__(
        self,
        kind: str,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        seed: int | None = None,
        allow_any_combination: bool = False,
    ) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown Cartesian mask kind {kind!r}; valid: {sorted(self.kinds)}")
        self.kind = kind
        self.mask_func = self.kinds[kind](
            center_fractions, accelerations, allow_any_combination=allow_any_combination, seed=seed
        )

    def __call__(self, kspace_shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """Mask for ``(C, H, W)`` -> ``(1, 1, W)``, or for ``(C, Z, H, W)`` -> ``(1, Z, 1, W)``."""
        dims = _check_rank(kspace_shape, (2, 3), "CartesianMask")
        width = dims[-1]
        mask, _ = self.mask_func((kspace_shape[0], dims[-2], width, 2), seed=seed)
        profile = mask.reshape(width)
        out_shape = (1, *dims[:-2], 1, width)
        return profile.expand(out_shape).contiguous()


class CineMask:
    """Time-varying 1D masks for cine ``D=(T, H, W)``: a different line pattern in every frame.

    Every frame samples ``round(W / acceleration)`` lines over ``W``: the ``center_lines``
    central lines plus the rest drawn either uniformly at random without replacement
    (``pattern="random"``) or on an equispaced lattice over the outer lines whose offset moves by
    about one line per frame from a random start (``pattern="equispaced"``, sheared sampling).

    Args:
        acceleration: per-frame undersampling factor, > 1.
        center_lines: fully sampled central lines in every frame, >= 0.
        seed: seed of the internal ``np.random.Generator``.
        pattern: ``"random"`` or ``"equispaced"``.

    Call with ``(C, T, H, W)`` -> float32 mask ``(1, T, 1, W)``.
    """

    patterns: ClassVar[tuple[str, ...]] = ("random", "equispaced")

    def __init__(
        self,
        acceleration: float,
        center_lines: int,
        seed: int | None = None,
        pattern: str = "random",
    ) -> None:
        check_acceleration(acceleration)
        if int(center_lines) != center_lines or center_lines < 0:
            raise ValueError(f"center_lines must be a non-negative integer, got {center_lines}")
        if pattern not in self.patterns:
            raise ValueError(f"unknown cine pattern {pattern!r}; valid: {list(self.patterns)}")
        self.acceleration = float(acceleration)
        self.center_lines = int(center_lines)
        self.pattern = pattern
        self.rng = np.random.default_rng(seed)

    def __call__(self, kspace_shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """Mask for cine k-space ``(C, T, H, W)`` -> float32 ``(1, T, 1, W)``."""
        frames, _, width = _check_rank(kspace_shape, (3,), "CineMask")
        if self.center_lines > width:
            raise ValueError(f"center_lines={self.center_lines} exceeds the {width} lines of W")
        lines = round(width / self.acceleration)
        if lines <= self.center_lines:
            raise ValueError(
                f"acceleration {self.acceleration} on {width} lines allows {lines} lines per "
                f"frame, no more than the {self.center_lines} centre lines; frames could not differ"
            )
        rng = self.rng if seed is None else np.random.default_rng(seed)
        center = np.zeros(width, dtype=bool)
        center[center_slice(width, self.center_lines)] = True
        outer_idx = np.flatnonzero(~center)
        extra = lines - self.center_lines
        mask = np.zeros((frames, width), dtype=np.float32)
        mask[:, center] = 1.0
        if self.pattern == "random":
            for t in range(frames):
                mask[t, rng.choice(outer_idx, size=extra, replace=False)] = 1.0
        else:
            spacing = outer_idx.size / extra
            shifts = max(1, round(spacing))
            start = int(rng.integers(shifts))
            for t in range(frames):
                offset = ((start + t) % shifts) * spacing / shifts
                picks = np.floor(offset + spacing * np.arange(extra)).astype(np.int64)
                mask[t, outer_idx[picks]] = 1.0
        return torch.from_numpy(mask).reshape(1, frames, 1, width)


def acceleration_of(mask: torch.Tensor | np.ndarray) -> float:
    """Acceleration of a 0/1 mask: number of locations over number sampled.

    Any shape; a mask with size 1 along broadcast axes gives the acceleration of the broadcast.
    """
    values = torch.as_tensor(mask)
    sampled = float(values.to(torch.float64).sum())
    if sampled <= 0:
        raise ValueError("mask samples nothing; its acceleration is undefined")
    return values.numel() / sampled


_SPECS: dict[str, tuple[set[str], set[str]]] = {
    # name: (required keys, optional keys)
    "random": ({"center_fractions", "accelerations"}, {"seed", "allow_any_combination"}),
    "equispaced": ({"center_fractions", "accelerations"}, {"seed", "allow_any_combination"}),
    "poisson": ({"acceleration"}, {"calib", "seed", "variable_density"}),
    "cine": ({"acceleration", "center_lines"}, {"seed", "pattern"}),
}


def build_mask_func(spec: dict[str, Any]) -> MaskFunction:
    """Build a mask function from a plain config dict.

    Examples: ``{"name": "random", "center_fractions": [0.08], "accelerations": [4], "seed": 0}``,
    ``{"name": "equispaced", ...}`` (same keys), ``{"name": "poisson", "acceleration": 6,
    "calib": [12, 12]}``, ``{"name": "cine", "acceleration": 8, "center_lines": 8}``.
    """
    if not isinstance(spec, dict):
        raise TypeError(f"mask spec must be a dict, got {type(spec).__name__}")
    params = dict(spec)
    name = params.pop("name", None)
    if name not in _SPECS:
        raise ValueError(f"unknown mask name {name!r}; valid names: {sorted(_SPECS)}")
    required, optional = _SPECS[name]
    missing = required - params.keys()
    unknown = params.keys() - required - optional
    if missing or unknown:
        raise ValueError(
            f"mask spec {name!r}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; "
            f"expected {sorted(required)} and optionally {sorted(optional)}"
        )
    if name in ("random", "equispaced"):
        return CartesianMask(name, **params)
    if name == "poisson":
        if "calib" in params:
            params["calib"] = tuple(params["calib"])
        return PoissonDiscMask(**params)
    return CineMask(**params)


def mask_spec_from_yaml(text: str | None, option: str = "--mask") -> dict[str, Any] | None:
    """A mask spec given as YAML on a command line (e.g. ``'{name: random, accelerations:
    [4], center_fractions: [0.08]}'``), checked by :func:`build_mask_func`; ``None`` stays
    ``None``. Raises ``ValueError`` naming ``option`` when it is not a valid mapping."""
    if text is None:
        return None
    import yaml

    spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise ValueError(
            f"{option} must be a YAML mapping such as '{{name: random, ...}}', got {text!r}"
        )
    build_mask_func(dict(spec))  # checked before any work
    return spec
