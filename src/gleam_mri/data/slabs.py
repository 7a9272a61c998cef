"""3D readout slabs: cut volumes along the readout ``H`` for training and slab-wise inference.

A 3D volume's k-space ``(C, Z, H, W)`` is Fourier-encoded along all three axes, but the readout
``H`` is fully sampled (masks vary over ``(Z, W)`` only). After an inverse centred FFT along ``H``
the data are *hybrid* ``(k_z, x, k_w)``: row ``x`` of the hybrid data holds exactly the rows ``x``
of every coil image, still encoded along ``Z`` and ``W``. Hence, exactly (up to float rounding):

- a slab of rows ``start:stop`` of the coil images is the inverse 2D FFT over ``(Z, W)`` of the same
  rows of the hybrid data; a forward centred FFT along the slab's own ``h = stop - start`` rows
  turns it into ordinary 3D k-space of a thinner field of view (:func:`extract_slab`), whose
  centred inverse 3D FFT is that slab of the coil images;
- the mask ``(1, Z, 1, W)`` multiplies every readout sample alike, so it commutes with the FFT
  along ``H``: masking then slicing equals slicing then masking, and the slab keeps the same mask;
- coil maps live in image space, so the slab's maps are the same rows of the volume's maps.

Therefore ``A^H y`` (zero-filled) is exactly separable along the readout, and any per-slab
reconstruction solves the volume's problem restricted to the slab. :class:`SlabDataset` trains on
such slabs; :func:`reconstruct_volume_in_slabs` reconstructs a whole volume one slab at a time
(memory-bounded) and blends overlapping rows with linear ramps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.datasets import (
    MapsEstimator,
    MaskFunc,
    VolumeDataset,
    espirit_estimate,
    normalized_item,
)
from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.fft import centred_fft, ifftnc
from gleam_mri.physics.coils import rss
from gleam_mri.physics.operators import SenseOp

ReconstructFn = Callable[[MRIBatch], torch.Tensor]

READOUT = -2  # the readout axis H of (C, Z, H, W)


def _check_volume(kspace: torch.Tensor, name: str = "kspace") -> None:
    if not isinstance(kspace, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(kspace).__name__}")
    if kspace.ndim != 4:
        raise ValueError(
            f"{name} must be 3D multi-coil (C, Z, H, W), got shape {tuple(kspace.shape)}"
        )


def readout_slabs(kspace: torch.Tensor | int, slab: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` of slabs of ``slab`` rows covering the readout ``H``.

    ``kspace`` is a volume ``(C, Z, H, W)`` or ``H`` itself. Slabs start every ``slab - overlap``
    rows; the last one is moved back to end at ``H``, so every slab has exactly ``slab`` rows (items
    of one size collate) and neighbours share at least ``overlap`` rows. Raises ``ValueError`` for
    ``slab < 1``, ``slab > H``, ``overlap < 0`` or ``overlap >= slab``.
    """
    if isinstance(kspace, torch.Tensor):
        _check_volume(kspace)
        height = kspace.shape[READOUT]
    else:
        height = int(kspace)
    slab, overlap = int(slab), int(overlap)
    if slab < 1:
        raise ValueError(f"slab must be >= 1 row, got {slab}")
    if slab > height:
        raise ValueError(f"slab ({slab} rows) is larger than the readout size H = {height}")
    if not 0 <= overlap < slab:
        raise ValueError(f"overlap must satisfy 0 <= overlap < slab = {slab}, got {overlap}")
    step = slab - overlap
    starts = [*range(0, height - slab, step), height - slab]
    return [(start, start + slab) for start in starts]


def extract_slab(kspace: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """k-space ``(C, Z, stop - start, W)`` of rows ``start:stop`` of a volume ``(C, Z, H, W)``.

    Inverse centred FFT along ``H``, rows ``start:stop`` of the hybrid data, forward centred FFT
    along the slab's rows: its inverse 3D FFT equals rows ``start:stop`` of the volume's coil
    images exactly (module docstring). Works on masked k-space (the mask is unchanged).
    """
    _check_volume(kspace)
    height = kspace.shape[READOUT]
    if not 0 <= start < stop <= height:
        raise ValueError(f"slab rows {start}:{stop} are not a non-empty range inside H = {height}")
    hybrid = centred_fft(kspace, (READOUT,), inverse=True)
    return centred_fft(hybrid[..., start:stop, :].contiguous(), (READOUT,))


def _check_mask(mask: torch.Tensor, kspace: torch.Tensor) -> None:
    c, z, _, w = kspace.shape
    if torch.is_complex(mask) or mask.ndim != 4 or mask.shape[0] != 1 or mask.shape[READOUT] != 1:
        raise ValueError(
            f"mask must be real (1, Z, 1, W) (constant along the readout) for k-space "
            f"{tuple(kspace.shape)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if mask.shape[1] not in (1, z) or mask.shape[3] not in (1, w):
        raise ValueError(
            f"mask {tuple(mask.shape)} does not broadcast to k-space ({c}, {z}, _, {w})"
        )


def normalization_scale(
    kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor
) -> torch.Tensor:
    """``max |A^H y|`` of one slab (k-space, mask, maps ``(C, Z, h, W)``), float32 ``(1,)``.

    The same rule as :class:`~gleam_mri.data.datasets.VolumeDataset`; ``1`` when it is zero or
    not finite.
    """
    image = SenseOp(maps[None], mask[None], 3).adjoint(kspace[None])
    peak = image.abs().max()
    if torch.isfinite(peak) and peak > 0:
        return peak.reshape(1).to(torch.float32)
    return torch.ones(1, dtype=torch.float32, device=kspace.device)


class SlabDataset(VolumeDataset):
    """Readout slabs of 3D fastMRI-layout files: item ``i`` is ``MRIBatch`` ``(1, C, Z, slab, W)``.

    Items run over files, then volumes (the file's first axis), then slabs
    (:func:`readout_slabs`), so ``len = sum over volumes of slabs per volume``. Per item:

    - mask: drawn over the *whole* volume as :class:`VolumeDataset` does (file mask, else
      ``mask_func((C, Z, H, W), seed)``, else ones); with ``deterministic_masks`` the seed is the
      volume's, so every slab of a volume shares the mask VolumeDataset gives that volume. The
      mask must be constant along ``H`` (``(1, Z, 1, W)``).
    - k-space: :func:`extract_slab` of the masked volume k-space.
    - maps: ``"file"``: rows ``start:stop`` of the file's image-space ``maps``; ``"espirit"`` or a
      callable: estimated from the slab's masked k-space (per slab).
    - target: rows of the file's ``reconstruction_rss`` when it has the full ``(Z, H, W)`` size,
      else the RSS of the slab's coil images when the file is fully sampled, else ``None``.
    - normalisation: ``scale = max |A^H y|`` of the slab (:func:`normalization_scale`).

    Args:
        paths: a folder (its ``*.h5``), a file, or a list of them; 3D files only.
        slab, overlap: slab rows and rows shared by neighbours (:func:`readout_slabs`).
        Other arguments as in :class:`~gleam_mri.data.datasets.SliceDataset`.
    """

    kinds = ("3d",)

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        slab: int,
        overlap: int = 0,
        mask_func: MaskFunc | None = None,
        maps: str | MapsEstimator = "file",
        normalize: bool = True,
        deterministic_masks: bool = False,
        seed: int = 0,
        espirit_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            paths,
            mask_func=mask_func,
            maps=maps,
            normalize=normalize,
            deterministic_masks=deterministic_masks,
            seed=seed,
            espirit_options=espirit_options,
        )
        self.slab, self.overlap = int(slab), int(overlap)
        self.slabs: list[list[tuple[int, int]]] = []
        for info in self.infos:
            try:
                self.slabs.append(readout_slabs(info.kspace_shape[READOUT], slab, overlap))
            except ValueError as err:
                raise ValueError(f"{info.path}: {err}") from err
        self.slab_examples = [
            (f, v, bounds)
            for f, info in enumerate(self.infos)
            for v in range(info.num_slices)
            for bounds in self.slabs[f]
        ]

    def __len__(self) -> int:
        return len(self.slab_examples)

    def get(self, item: int, mask_seed: int | None = None) -> MRIBatch:
        """Item ``item``; ``mask_seed`` (if given) overrides the dataset's choice of mask seed."""
        file_index, index, (start, stop) = self.slab_examples[item]
        info = self.infos[file_index]
        vol = read_fastmri(info.path, slices=index)
        full = torch.from_numpy(vol.kspace[0])  # (C, Z, H, W)
        mask, seed = self._mask(vol, full, index, mask_seed)
        if mask.shape[READOUT] != 1:
            raise ValueError(
                f"{info.path}: the mask varies along the readout H (shape {tuple(mask.shape)}); "
                "readout slabs need a mask over (Z, W) only"
            )
        full_slab = extract_slab(full, start, stop)
        kspace = full_slab * mask
        if self.maps == "file":
            maps = torch.from_numpy(vol.maps[0][:, :, start:stop, :].copy())
        else:
            maps = self._coil_maps(vol, kspace, mask, 3)
        target = None
        file_rss = vol.reconstruction_rss
        if file_rss is not None and file_rss.shape[1:] == full.shape[1:]:
            target = torch.from_numpy(file_rss[0][:, start:stop, :].copy())
        elif vol.mask is None:
            target = rss(ifftnc(full_slab, 3), dim=0)
        scale = normalization_scale(kspace, mask, maps) if self.normalize else torch.ones(1)
        meta = {
            "file": str(info.path),
            "fname": info.path.name,
            "slice": index,
            "num_slices": info.num_slices,
            "slab": (start, stop),
            "num_slabs": len(self.slabs[file_index]),
            "kind": info.kind,
            "mask_seed": seed,
            "acquisition": info.attrs.get("acquisition"),
        }
        return normalized_item(kspace, mask, maps, target, scale, 3, meta)


def _ramp_weights(bounds: list[tuple[int, int]], j: int, device: torch.device) -> torch.Tensor:
    """Blend weights ``(h,)`` of slab ``j``: linear ramps over the rows it shares with neighbours.

    Positive everywhere (the sum over slabs is divided out), 1 on rows no other slab covers.
    """
    start, stop = bounds[j]
    h = stop - start
    rows = torch.arange(h, dtype=torch.float64, device=device)
    ramp_in = max(0, bounds[j - 1][1] - start) if j > 0 else 0
    ramp_out = max(0, stop - bounds[j + 1][0]) if j + 1 < len(bounds) else 0
    weight = torch.ones(h, dtype=torch.float64, device=device)
    weight = torch.minimum(weight, (rows + 1) / (ramp_in + 1))
    return torch.minimum(weight, (h - rows) / (ramp_out + 1))


@torch.no_grad()
def reconstruct_volume_in_slabs(
    reconstruct_fn: ReconstructFn,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor | None,
    slab: int,
    overlap: int = 0,
    normalize: bool = True,
    device: torch.device | str | None = None,
    espirit_options: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Complex image ``(Z, H, W)`` of a volume, reconstructed one readout slab at a time.

    Args:
        reconstruct_fn: ``fn(batch: MRIBatch (B=1, fft_ndim=3)) -> (1, Z, h, W)`` complex, e.g.
            ``lambda b: gleam_mri.training.loop.reconstruct(run, b)``; it sees normalised data.
        kspace: complex ``(C, Z, H, W)`` measured k-space (multiplied by ``mask`` here).
        mask: real ``(1, Z, 1, W)`` sampling mask, constant along the readout.
        maps: complex image-space coil maps ``(C, Z, H, W)``, or ``None`` for ESPIRiT per slab.
        slab, overlap: see :func:`readout_slabs`.
        normalize: divide each slab by its ``max |A^H y|`` before ``reconstruct_fn`` and multiply
            its output back (as :class:`SlabDataset` does for training).
        device: where ``reconstruct_fn`` runs (default: ``kspace``'s device); only one slab is
            there at a time, and results come back to ``kspace``'s device.
        espirit_options: keyword arguments of ESPIRiT when ``maps`` is ``None``.

    Overlapping rows are blended with linear ramps over the shared rows, divided by the summed
    weights of each row (a weighted mean of the slabs covering it).
    """
    _check_volume(kspace)
    if not torch.is_complex(kspace):
        raise TypeError(f"kspace must be complex, got {kspace.dtype}")
    _check_mask(mask, kspace)
    if maps is not None:
        _check_volume(maps, "maps")
        if maps.shape != kspace.shape or not torch.is_complex(maps):
            raise ValueError(
                f"maps must be complex with the k-space shape {tuple(kspace.shape)}, got "
                f"{maps.dtype} {tuple(maps.shape)}"
            )
    bounds = readout_slabs(kspace, slab, overlap)
    run_on = kspace.device if device is None else torch.device(device)
    dtype = torch.complex128 if kspace.dtype == torch.complex128 else torch.complex64
    mask = mask.to(torch.float32)
    hybrid = centred_fft(kspace * mask.to(kspace.device), (READOUT,), inverse=True)
    _, z, height, w = kspace.shape
    total = torch.zeros(z, height, w, dtype=torch.complex128, device=kspace.device)
    weights = torch.zeros(height, dtype=torch.float64, device=kspace.device)
    for j, (start, stop) in enumerate(bounds):
        slab_k = centred_fft(hybrid[..., start:stop, :].contiguous(), (READOUT,))
        slab_k = slab_k.to(run_on, dtype)
        slab_mask = mask.to(run_on)
        if maps is None:
            options = dict(espirit_options or {})
            slab_maps = espirit_estimate(slab_k, slab_mask, 3, **options).to(dtype)
        else:
            slab_maps = maps[..., start:stop, :].to(run_on, dtype)
        scale = (
            normalization_scale(slab_k, slab_mask, slab_maps)
            if normalize
            else torch.ones(1, device=run_on)
        )
        batch = MRIBatch(
            kspace=(slab_k / scale)[None],
            mask=slab_mask[None],
            maps=slab_maps[None],
            target=None,
            scale=scale,
            fft_ndim=3,
            meta=[{"slab": (start, stop), "num_slabs": len(bounds)}],
        )
        out = reconstruct_fn(batch)
        expected = (1, z, stop - start, w)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"reconstruct_fn must return a (1, Z, h, W) = {expected} image, got {got}"
            )
        image = batch.denormalize(out)[0].to(kspace.device, torch.complex128)
        weight = _ramp_weights(bounds, j, kspace.device)
        total[:, start:stop, :] += image * weight[:, None]
        weights[start:stop] += weight
        del batch, out, image, slab_k, slab_maps
    image = total / weights[:, None]
    return image.to(dtype)
