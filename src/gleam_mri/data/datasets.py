"""Datasets over files in the fastMRI layout: :class:`SliceDataset` (2D), :class:`VolumeDataset`.

Each item is an :class:`~gleam_mri.data.batch.MRIBatch` with ``B = 1``, built as follows.

- Mask: the file's own ``mask`` (fastMRI test files; broadcast over the readout rows) when
  present, else ``mask_func(kspace_shape=(C, *D), seed)`` (float32 0/1 ``(1, *D)``), else fully
  sampled (ones). With ``deterministic_masks`` the seed is ``zlib.crc32("<file name>/<index>")``,
  the same in every epoch; otherwise it is drawn from the dataset's generator (seeded by ``seed``,
  and re-seeded per ``DataLoader`` worker so workers do not repeat each other's masks).
- Maps: ``"file"`` reads the ``maps`` dataset; ``"espirit"`` estimates them from the calibration
  region of the masked k-space (:mod:`gleam_mri.physics.espirit`; cine uses the frame average);
  a callable ``maps(masked_kspace (C, *D), mask (1, *D), fft_ndim) -> (C, *D)`` is also accepted.
- Target: the ``reconstruction_rss`` slice when present, else the RSS of the coil images of the
  file's k-space if it is fully sampled (no ``mask`` in the file), else ``None``.
- Normalisation: ``scale = max |A^H y|`` of the zero-filled image (same maps and mask); k-space and
  target are divided by it and ``batch.denormalize`` multiplies back. ``scale = 1`` when
  ``normalize=False`` or the k-space is all zeros.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from gleam_mri.data.batch import MRIBatch
from gleam_mri.data.errors import DatasetError
from gleam_mri.data.fastmri import FastMRIInfo, FastMRIVolume, inspect_fastmri, read_fastmri
from gleam_mri.fft import ifftnc
from gleam_mri.physics.coils import rss
from gleam_mri.physics.operators import SenseOp

MaskFunc = Callable[[Sequence[int], int | None], torch.Tensor]
MapsEstimator = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def evenly_spread(count: int, most: int) -> list[int]:
    """Indices of at most ``most`` of ``count`` items, spread evenly (first and last included):
    the items a validation or a choice looks at when it cannot look at all."""
    return [int(i) for i in np.unique(np.linspace(0, count - 1, min(count, most)).round())]


def list_h5_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files from a folder (its ``*.h5``, sorted), a file, or a list of folders / files."""
    entries = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not entries:
        raise DatasetError("no data paths given (empty list)")
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = sorted(p for p in entry.glob("*.h5") if p.is_file())
            if not found:
                raise DatasetError(f"{entry}: folder contains no .h5 files")
            files.extend(found)
        elif entry.exists():
            files.append(entry)
        else:
            raise DatasetError(f"{entry}: no such file or folder")
    return files


def mask_seed(path: Path, index: int) -> int:
    """Stable mask seed of item ``index`` of a file (depends on the file name only)."""
    return zlib.crc32(f"{path.name}/{index}".encode())


def espirit_estimate(
    kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int, cine: bool = False, **options: Any
) -> torch.Tensor:
    """ESPIRiT maps ``(C, *D)`` from masked k-space ``(C, *D)`` and its mask ``(1, *D)``.

    The calibration size is the fully sampled centre of ``mask`` (capped by ``max_calib_size``,
    default 24, per axis); the kernel is at most 6 per axis. Cine estimates one set of maps from
    the frame average and repeats it over ``T``. Other ``options`` go to ``espirit_maps``.
    """
    from gleam_mri.physics.espirit import espirit_maps, find_calibration_size

    cap = int(options.pop("max_calib_size", 24))
    calib_kspace = kspace.mean(dim=1) if cine else kspace
    encoded = calib_kspace.shape[1:]
    calib = find_calibration_size(mask, fft_ndim=fft_ndim, shape=encoded)
    calib = tuple(min(c, cap) for c in calib)
    options.setdefault("kernel_size", tuple(min(6, c) for c in calib))
    maps = espirit_maps(calib_kspace, calib_size=calib, fft_ndim=fft_ndim, **options)
    if cine:
        maps = maps.unsqueeze(1).expand_as(kspace)
    return maps.to(torch.complex64)


def normalized_item(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor | None,
    scale: torch.Tensor,
    fft_ndim: int,
    meta: dict[str, Any],
) -> MRIBatch:
    """One sample (``(C, *D)`` k-space and maps, ``(1, *D)`` mask) as a B=1 batch, divided by
    ``scale`` ``(1,)``."""
    return MRIBatch(
        kspace=(kspace / scale)[None],
        mask=mask[None],
        maps=maps[None],
        target=None if target is None else (target / scale)[None],
        scale=scale,
        fft_ndim=fft_ndim,
        meta=[meta],
    )


class _FastMRIDataset(Dataset):
    """Shared indexing and item construction; subclasses fix the accepted file kinds."""

    kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        mask_func: MaskFunc | None = None,
        maps: str | MapsEstimator = "file",
        normalize: bool = True,
        deterministic_masks: bool = False,
        seed: int = 0,
        espirit_options: dict[str, Any] | None = None,
    ) -> None:
        if not (maps in ("file", "espirit") or callable(maps)):
            raise ValueError(f'maps must be "file", "espirit" or a callable, got {maps!r}')
        if mask_func is not None and not callable(mask_func):
            raise TypeError(f"mask_func must be callable, got {type(mask_func).__name__}")
        self.files = list_h5_files(paths)
        self.infos: list[FastMRIInfo] = [inspect_fastmri(p) for p in self.files]
        for info in self.infos:
            if info.kind not in self.kinds:
                raise DatasetError(
                    f"{info.path}: a {info.kind!r} file cannot go in a {type(self).__name__}, "
                    f"which takes {' / '.join(self.kinds)} files"
                )
            if maps == "file" and not info.has_maps:
                raise DatasetError(
                    f"{info.path}: no 'maps' dataset; use maps=\"espirit\" (or a callable) to "
                    "estimate coil maps"
                )
        if len({info.kind for info in self.infos}) > 1:
            raise DatasetError(
                f"{type(self).__name__} files must all be of one kind (batches share fft_ndim), "
                f"got {sorted({info.kind for info in self.infos})}"
            )
        self.mask_func = mask_func
        self.maps = maps
        self.normalize = normalize
        self.deterministic_masks = deterministic_masks
        self.seed = int(seed)
        self.espirit_options = dict(espirit_options or {})
        self.examples = [(f, i) for f, inf in enumerate(self.infos) for i in range(inf.num_slices)]
        self._rng: np.random.Generator | None = None
        self._rng_owner: int | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def _generator(self) -> np.random.Generator:
        worker = get_worker_info()
        owner = None if worker is None else worker.seed
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(self.seed if owner is None else [self.seed, owner])
            self._rng_owner = owner
        return self._rng

    def _mask(
        self, vol: FastMRIVolume, kspace: torch.Tensor, index: int, seed: int | None = None
    ) -> tuple[torch.Tensor, int | None]:
        """The mask ``(1, *D)`` float32 for one sample ``(C, *D)``, and the seed used (or None)."""
        dims = kspace.shape[1:]
        if vol.mask is not None:
            mask = torch.from_numpy(vol.mask)
            shape = (1, *([1] * (len(dims) - 1)), dims[-1])
            if mask.ndim == 2:  # (Z|T, W)
                shape = (1, dims[0], 1, dims[-1])
            return mask.reshape(shape), None
        if self.mask_func is None:
            return torch.ones(1, *dims[:-2], 1, dims[-1]), None
        if seed is None:
            seed = (
                mask_seed(vol.path, index)
                if self.deterministic_masks
                else int(self._generator().integers(2**31))
            )
        mask = self.mask_func(tuple(kspace.shape), seed)
        if not isinstance(mask, torch.Tensor) or torch.is_complex(mask):
            raise TypeError(f"mask_func must return a real torch.Tensor, got {type(mask)}")
        try:
            ok = mask.ndim == kspace.ndim and mask.shape[0] == 1
            torch.broadcast_shapes(mask.shape, kspace.shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"mask_func returned shape {tuple(mask.shape)}; expected (1, *D) broadcastable "
                f"to the sample k-space {tuple(kspace.shape)}"
            )
        return mask.to(torch.float32), seed

    def _coil_maps(
        self, vol: FastMRIVolume, kspace: torch.Tensor, mask: torch.Tensor, fft_ndim: int
    ) -> torch.Tensor:
        if self.maps == "file":
            return torch.from_numpy(vol.maps[0])
        if self.maps == "espirit":
            options = dict(self.espirit_options)
            return espirit_estimate(kspace, mask, fft_ndim, cine=vol.kind == "cine", **options)
        maps = self.maps(kspace, mask, fft_ndim)
        if not isinstance(maps, torch.Tensor) or not torch.is_complex(maps):
            raise TypeError(f"the maps callable must return a complex tensor, got {type(maps)}")
        try:
            return maps.to(torch.complex64).expand_as(kspace)
        except RuntimeError as err:
            raise ValueError(
                f"the maps callable returned shape {tuple(maps.shape)} for k-space "
                f"{tuple(kspace.shape)}"
            ) from err

    def __getitem__(self, item: int) -> MRIBatch:
        return self.get(item)

    def get(self, item: int, mask_seed: int | None = None) -> MRIBatch:
        """Item ``item``; ``mask_seed`` (if given) overrides the dataset's choice of mask seed.

        The training loop passes a seed derived from (run seed, step, item) so that a resumed run
        draws exactly the masks of an uninterrupted one.
        """
        file_index, index = self.examples[item]
        info = self.infos[file_index]
        vol = read_fastmri(info.path, slices=index)
        full = torch.from_numpy(vol.kspace[0])  # (C, *D)
        fft_ndim = info.fft_ndim
        mask, seed = self._mask(vol, full, index, mask_seed)
        kspace = full * mask
        maps = self._coil_maps(vol, kspace, mask, fft_ndim)
        if vol.reconstruction_rss is not None:
            target = torch.from_numpy(vol.reconstruction_rss[0])
        elif vol.mask is None:
            target = rss(ifftnc(full, fft_ndim), dim=0)
        else:
            target = None
        scale = torch.ones(1)
        if self.normalize:
            image = SenseOp(maps[None], mask[None], fft_ndim).adjoint(kspace[None])
            peak = image.abs().max()
            if torch.isfinite(peak) and peak > 0:
                scale = peak.reshape(1).to(torch.float32)
        meta = {
            "file": str(info.path),
            "fname": info.path.name,
            "slice": index,
            "num_slices": info.num_slices,
            "kind": info.kind,
            "mask_seed": seed,
            "acquisition": info.attrs.get("acquisition"),
            "max": info.attrs.get("max"),
            "encoding_size": info.header.get("encoding_size"),
            "recon_size": info.header.get("recon_size"),
        }
        return normalized_item(kspace, mask, maps, target, scale, fft_ndim, meta)


class SliceDataset(_FastMRIDataset):
    """2D slices of fastMRI-layout files: item ``i`` is one slice, ``MRIBatch`` ``(1, C, H, W)``.

    Args:
        paths: a folder (its ``*.h5`` files), a file, or a list of folders / files.
        mask_func: ``(kspace_shape (C, *D), seed) -> (1, *D)`` float32 0/1, or ``None``.
        maps: ``"file"``, ``"espirit"`` or a callable (see the module docstring).
        normalize: divide k-space and target by the zero-filled image's maximum magnitude.
        deterministic_masks: seed masks from (file name, slice) for validation and test.
        seed: seed of the dataset's own generator (random masks).
        espirit_options: keyword arguments of ``espirit_maps`` (and ``max_calib_size``).
    """

    kinds = ("2d",)


class VolumeDataset(_FastMRIDataset):
    """3D slabs or cine series: item ``i`` is ``MRIBatch`` ``(1, C, Z|T, H, W)``.

    ``fft_ndim`` is 3 for 3D files and 2 for cine; all files must be of one kind. Arguments as in
    :class:`SliceDataset`.
    """

    kinds = ("3d", "cine")


def open_dataset(
    paths: str | Path | Sequence[str | Path],
    mask: dict[str, Any] | MaskFunc | None = None,
    maps: str | MapsEstimator = "file",
    deterministic_masks: bool = False,
    seed: int = 0,
) -> SliceDataset | VolumeDataset:
    """A :class:`SliceDataset` or :class:`VolumeDataset`, whichever fits the files' kind.

    ``mask`` is a mask function or a config dict for ``gleam_mri.physics.masks.build_mask_func``.
    """
    from gleam_mri.physics.masks import build_mask_func

    files = list_h5_files(paths)
    cls = SliceDataset if inspect_fastmri(files[0]).kind == "2d" else VolumeDataset
    mask_func = build_mask_func(mask) if isinstance(mask, dict) else mask
    return cls(
        files, mask_func=mask_func, maps=maps, deterministic_masks=deterministic_masks, seed=seed
    )
