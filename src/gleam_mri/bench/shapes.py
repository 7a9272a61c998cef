"""Named benchmark workloads: data shape, coils, undersampling and the default model of each.

A preset fixes what one training step sees; the depth (``model.unrolls``) and the strategy are
chosen by the harness. Shapes follow the project's conventions (image ``(B, *D)``, k-space
``(B, C, *D)``, readout = axis ``-2``):

- ``2d-knee``: fastMRI knee-like, 15 coils, ``D = (320, 320)``, PGD-ResNet (64 features, 5 blocks).
- ``varnet-knee``: fastMRI's raw k-space size, 15 coils, ``D = (640, 368)``, E2E-VarNet with
  fastMRI's default sizes (U-Nets of 18 channels and 4 pools, sensitivity U-Net 8 / 4); the loss
  compares the centre ``320 x 320`` with the target, as fastMRI's training does.
- ``3d-slab``: 8 coils, a slab of 80 readout rows of a 256 x 256 (kz, ky) volume:
  ``D = (Z, H, W) = (256, 80, 256)``. The project trains 3D networks on slabs cut along the readout
  ``H`` (:mod:`gleam_mri.data.slabs`), so the slab thickness sits on ``H``; a 3D convolution costs
  the same for any order of the three axes. PGD-ResNet with 3D convolutions (32 features, 4 blocks).
- ``cine``: 10 coils, 20 frames of 192 x 192, ``D = (T, H, W) = (20, 192, 192)``, PGD-ResNet with
  (2+1)D convolutions (32 features, 4 blocks), per-frame masks.
- ``tiny-2d``, ``tiny-3d``, ``tiny-cine``, ``tiny-varnet``: the same kinds at toy sizes, for CPU
  tests.

The batch of :func:`make_batch` is synthetic (random complex image, birdcage maps, regular masks
with a fully sampled centre): the cost of a step does not depend on the image content.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gleam_mri.config import ModelConfig
from gleam_mri.crop import center_crop
from gleam_mri.data.batch import MRIBatch
from gleam_mri.fft import fftnc
from gleam_mri.physics.coils import birdcage_maps

KINDS = ("2d", "3d", "cine")


@dataclass(frozen=True)
class BenchShape:
    """One benchmark workload.

    Attributes:
        name: preset name.
        kind: ``"2d"``, ``"3d"`` or ``"cine"`` (as ``data.kind``).
        coils: number of receive coils ``C``.
        image: the image shape ``D`` (``(H, W)``, ``(Z, H, W)`` or ``(T, H, W)``).
        model: :class:`~gleam_mri.config.ModelConfig` fields of the default model.
        target: ``(h, w)`` centre crop the loss compares (``None``: the whole image).
        acceleration: undersampling factor of the regular masks.
        center: fully sampled centre lines (per phase-encoding axis).
        description: one line for tables.
    """

    name: str
    kind: str
    coils: int
    image: tuple[int, ...]
    model: dict[str, Any] = field(default_factory=dict)
    target: tuple[int, int] | None = None
    acceleration: int = 4
    center: int = 8
    description: str = ""

    @property
    def fft_ndim(self) -> int:
        """Fourier-encoded axes: 3 for 3D, 2 for 2D and cine."""
        return 3 if self.kind == "3d" else 2

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (for the JSON output)."""
        return dataclasses.asdict(self)


_PGD_2D = {"name": "pgd", "regularizer": "resnet", "features": 64, "blocks": 5}
_PGD_3D = {"name": "pgd", "regularizer": "resnet", "features": 32, "blocks": 4}
_VARNET = {
    "name": "varnet",
    "regularizer": "unet",
    "features": 18,
    "levels": 4,
    "sens_features": 8,
    "sens_levels": 4,
    "sens_chunk": 4,  # the coil U-Nets 4 coils at a time, checkpointed (models/varnet.py)
}

PRESETS: dict[str, BenchShape] = {
    "2d-knee": BenchShape(
        "2d-knee",
        "2d",
        15,
        (320, 320),
        _PGD_2D,
        description="2D knee-like, 15 coils, 320x320, PGD-ResNet",
    ),
    "varnet-knee": BenchShape(
        "varnet-knee",
        "2d",
        15,
        (640, 368),
        _VARNET,
        target=(320, 320),
        description="fastMRI knee k-space, 15 coils, 640x368, E2E-VarNet",
    ),
    "3d-slab": BenchShape(
        "3d-slab",
        "3d",
        8,
        (256, 80, 256),
        _PGD_3D,
        description="3D slab, 8 coils, (Z,H,W)=256x80x256, PGD-ResNet 3D",
    ),
    "cine": BenchShape(
        "cine",
        "cine",
        10,
        (20, 192, 192),
        _PGD_3D,
        acceleration=8,
        description="cine, 10 coils, 20 frames of 192x192, PGD-ResNet (2+1)D",
    ),
    # scaled-down versions of the four workloads, for figures measured on a CPU
    "small-2d": BenchShape(
        "small-2d",
        "2d",
        8,
        (128, 128),
        {"name": "pgd", "regularizer": "resnet", "features": 32, "blocks": 3},
        description="2D, 8 coils, 128x128, PGD-ResNet 32 features (CPU figures)",
    ),
    "small-varnet": BenchShape(
        "small-varnet",
        "2d",
        8,
        (160, 96),
        {**_VARNET, "features": 8, "levels": 3, "sens_features": 4, "sens_levels": 3},
        target=(96, 96),
        description="k-space 8 coils 160x96, E2E-VarNet 8 ch / 3 pools (CPU figures)",
    ),
    "small-3d": BenchShape(
        "small-3d",
        "3d",
        4,
        (32, 16, 32),
        {"name": "pgd", "regularizer": "resnet", "features": 16, "blocks": 2},
        description="3D slab, 4 coils, (Z,H,W)=32x16x32, PGD-ResNet 3D (CPU figures)",
    ),
    "small-cine": BenchShape(
        "small-cine",
        "cine",
        4,
        (8, 64, 64),
        {"name": "pgd", "regularizer": "resnet", "features": 16, "blocks": 2},
        acceleration=8,
        description="cine, 4 coils, 8 frames of 64x64, PGD-ResNet (2+1)D (CPU figures)",
    ),
    "tiny-2d": BenchShape(
        "tiny-2d",
        "2d",
        3,
        (20, 16),
        {"name": "pgd", "regularizer": "resnet", "features": 4, "blocks": 1},
        center=4,
        description="toy 2D (CPU tests)",
    ),
    "tiny-3d": BenchShape(
        "tiny-3d",
        "3d",
        2,
        (8, 10, 8),
        {"name": "pgd", "regularizer": "resnet", "features": 4, "blocks": 1},
        center=2,
        description="toy 3D (CPU tests)",
    ),
    "tiny-cine": BenchShape(
        "tiny-cine",
        "cine",
        2,
        (4, 12, 10),
        {"name": "pgd", "regularizer": "resnet", "features": 4, "blocks": 1},
        center=2,
        description="toy cine (CPU tests)",
    ),
    "tiny-varnet": BenchShape(
        "tiny-varnet",
        "2d",
        3,
        (32, 24),
        {**_VARNET, "features": 4, "levels": 2, "sens_features": 4, "sens_levels": 2},
        target=(20, 20),
        center=4,
        description="toy E2E-VarNet (CPU tests)",
    ),
}


def get_preset(name: str) -> BenchShape:
    """The preset called ``name``; ``ValueError`` naming the valid ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown benchmark preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def model_config(shape: BenchShape, base: ModelConfig | None = None) -> ModelConfig:
    """The model of a workload: ``base`` if given (e.g. from a config file), else the preset's."""
    if base is not None:
        return base
    return ModelConfig(**shape.model)


def _line_mask(n: int, every: int, center: int, offset: int = 0) -> np.ndarray:
    """0/1 vector of length ``n``: every ``every``-th line from ``offset`` plus ``center`` lines."""
    line = np.zeros(n, dtype=np.float32)
    line[offset % every :: every] = 1
    start = n // 2 - center // 2
    line[max(start, 0) : start + center] = 1
    return line


def make_mask(shape: BenchShape) -> torch.Tensor:
    """Mask of one item, float32 with the rank of ``D`` and size 1 on the readout axis.

    2D: ``(1, W)``; 3D: ``(Z, 1, W)`` (the product of a 2-fold pattern over kz and an
    ``acceleration / 2``-fold one over ky, each with ``center`` central lines, so the centre block
    is fully sampled); cine: ``(T, 1, W)``, lines shifted by one per frame.
    """
    acc, center = shape.acceleration, shape.center
    if shape.kind == "2d":
        _, w = shape.image
        return torch.from_numpy(_line_mask(w, acc, center)).view(1, w)
    if shape.kind == "3d":
        z, _, w = shape.image
        every_z = 2 if acc % 2 == 0 else 1
        lattice = np.outer(_line_mask(z, every_z, center), _line_mask(w, acc // every_z, center))
        return torch.from_numpy(lattice).view(z, 1, w)
    t, _, w = shape.image
    frames = np.stack([_line_mask(w, acc, center, offset=i) for i in range(t)])
    return torch.from_numpy(frames).view(t, 1, w)


def _maps(shape: BenchShape) -> torch.Tensor:
    """Birdcage maps ``(C, *D)`` (cine: the same 2D maps in every frame)."""
    if shape.kind == "cine":
        t = shape.image[0]
        return birdcage_maps(shape.coils, shape.image[1:])[:, None].expand(-1, t, -1, -1)
    return birdcage_maps(shape.coils, shape.image)


def make_batch(
    shape: BenchShape, batch: int = 1, device: torch.device | str = "cpu", seed: int = 0
) -> MRIBatch:
    """A synthetic :class:`MRIBatch` of ``batch`` items of the workload, on ``device``.

    k-space complex64 ``(B, C, *D)`` = mask x FFT(maps x image) of a random complex image; target
    float32 ``(B, *Dt)`` = the image's magnitude (centre-cropped to ``shape.target``).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, *shape.image, dtype=torch.complex64, generator=g)
    maps = _maps(shape).expand(batch, *([-1] * (1 + len(shape.image)))).contiguous()
    item_mask = make_mask(shape)
    mask = item_mask[None, None].expand(batch, 1, *item_mask.shape).contiguous()
    kspace = mask * fftnc(maps * image[:, None], shape.fft_ndim)
    target = image.abs()
    if shape.target is not None:
        target = center_crop(target, shape.target).contiguous()
    return MRIBatch(
        kspace=kspace,
        mask=mask,
        maps=maps,
        target=target,
        scale=torch.ones(batch),
        fft_ndim=shape.fft_ndim,
    ).to(device)
