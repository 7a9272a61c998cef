"""Reader and writer for multi-coil k-space in the fastMRI HDF5 layout, with gleam-mri extensions.

File layout
-----------
fastMRI multi-coil files (read unchanged by ``fastmri.data.mri_data.SliceDataset``):

- ``kspace``: complex64 ``(slices, coils, H, W)``; ``H`` is the readout (e.g. 640), ``W`` the phase
  encoding (e.g. 368).
- ``reconstruction_rss`` (optional, absent in test files): float32 ``(slices, h, w)``, the RSS of
  the fully sampled coil images, cropped to the recon size in real files (e.g. 320 x 320).
- ``ismrmrd_header``: bytes of ISMRMRD XML (namespace ``http://www.ismrm.org/ISMRMRD``); fastMRI
  reads ``encoding/encodedSpace/matrixSize`` (x = H, y = W, z), ``encoding/reconSpace/matrixSize``
  and ``encoding/encodingLimits/kspace_encoding_step_1`` (center, maximum).
- attrs: ``max`` (max of ``reconstruction_rss``), ``norm`` (its L2 norm), ``acquisition`` (e.g.
  ``"CORPD_FBK"``, ``"AXT1"``), ``patient_id``.
- ``mask`` (optional, test / challenge files only): float ``(W,)``, the sampled phase-encoding
  lines.

gleam-mri extensions (the same file type; 2D files stay fastMRI-readable):

- ``maps`` (optional): complex64 with the shape of ``kspace``, the true (simulated) coil maps.
- attr ``gleam_kind`` in ``{"2d", "3d", "cine"}``; absent means ``"2d"``. 3D and cine add one axis
  after the coils: 3D ``kspace`` ``(slabs, coils, Z, H, W)``, cine ``(slices, coils, T, H, W)``;
  ``reconstruction_rss`` ``(slices, Z|T, h, w)``; ``mask`` ``(W,)`` or ``(Z|T, W)``.

Header policy: a file without ``ismrmrd_header`` reads with ``header == {}`` (the arrays describe
themselves; only fastMRI's own reader needs the header), while a header that is present but is not
well-formed ISMRMRD XML raises :class:`FastMRIFormatError`, since it marks a corrupt file.
:func:`parse_ismrmrd_header` returns ``None`` for optional fields it does not find.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gleam_mri.atomic import atomic_path
from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.hdf5_attributes import check_vlen_attributes
from gleam_mri.data.ismrmrd_header import make_ismrmrd_header, parse_ismrmrd_header
from gleam_mri.data.limits import (
    check_array_size,
    check_chunk_count,
    check_hdf5_dtype,
    check_hdf5_heaps,
    check_vlen_sizes,
    raw_extents,
)

KINDS = ("2d", "3d", "cine")
KSPACE_NDIM = {"2d": 4, "3d": 5, "cine": 5}

# ------------------------------------------------------------------------------ layout validation


@dataclass(frozen=True)
class FastMRIInfo:
    """What a file holds, read without loading array data (see :func:`inspect_fastmri`)."""

    path: Path
    kind: str
    num_slices: int
    kspace_shape: tuple[int, ...]
    has_target: bool
    target_shape: tuple[int, ...] | None
    has_maps: bool
    has_mask: bool
    header: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def fft_ndim(self) -> int:
        """Number of Fourier-encoded axes: 3 for ``"3d"``, else 2."""
        return 3 if self.kind == "3d" else 2


@dataclass
class FastMRIVolume:
    """Arrays of one file (or of the slices read), as numpy arrays; ``slices`` are their indices.

    ``kspace`` complex64 ``(S, C, *D)``; ``reconstruction_rss`` float32 ``(S, *Dt)`` or ``None``;
    ``mask`` float32 ``(W,)`` or ``(Z|T, W)`` or ``None``; ``maps`` complex64 ``(S, C, *D)`` or
    ``None``.
    """

    kspace: np.ndarray
    reconstruction_rss: np.ndarray | None
    header: dict[str, Any]
    attrs: dict[str, Any]
    mask: np.ndarray | None
    maps: np.ndarray | None
    kind: str
    path: Path
    slices: range


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _check_kind(kind: Any, path: object) -> str:
    kind = _plain(kind)
    if not isinstance(kind, str) or kind not in KINDS:
        raise FastMRIFormatError(path, f"unknown kind {kind!r}; expected one of {KINDS}")
    return kind


def _check_layout(path: object, kind: str, kspace: Any, target: Any, maps: Any, mask: Any) -> None:
    """Check shapes and dtypes of numpy arrays or HDF5 datasets (or None); no data is read."""
    shape = tuple(kspace.shape)
    if kspace.dtype.kind != "c":
        raise FastMRIFormatError(path, f"kspace must be complex (complex64), got {kspace.dtype}")
    names = {"2d": "(slices, coils, H, W)", "3d": "(slabs, coils, Z, H, W)"}
    expected = names.get(kind, "(slices, coils, T, H, W)")
    if len(shape) != KSPACE_NDIM[kind]:
        raise FastMRIFormatError(
            path, f"kspace of a {kind} file must be {expected}, got shape {shape}"
        )
    if min(shape) < 1:
        raise FastMRIFormatError(path, f"kspace has an empty axis: shape {shape}")
    if maps is not None:
        if maps.dtype.kind != "c":
            raise FastMRIFormatError(path, f"maps must be complex, got dtype {maps.dtype}")
        if tuple(maps.shape) != shape:
            raise FastMRIFormatError(path, f"maps shape {maps.shape} != kspace shape {shape}")
    if target is not None:
        tshape = tuple(target.shape)
        if target.dtype.kind not in "fiu":
            raise FastMRIFormatError(path, f"reconstruction_rss must be real, got {target.dtype}")
        if len(tshape) != len(shape) - 1:
            raise FastMRIFormatError(
                path, f"reconstruction_rss must have rank {len(shape) - 1}, got shape {tshape}"
            )
        lead = (shape[0], *shape[2:-2])
        if tshape[: len(lead)] != lead:
            raise FastMRIFormatError(
                path,
                f"reconstruction_rss shape {tshape} does not match kspace {shape} "
                "(slice count and Z/T axis must agree)",
            )
    if mask is not None:
        if mask.dtype.kind not in "biuf":
            raise FastMRIFormatError(path, f"mask must be real (0 and 1), got dtype {mask.dtype}")
        allowed = [(shape[-1],)] + ([(shape[2], shape[-1])] if kind != "2d" else [])
        if tuple(mask.shape) not in allowed:
            raise FastMRIFormatError(
                path, f"mask shape {mask.shape} does not fit kspace {shape}; expected {allowed}"
            )


# ----------------------------------------------------------------------------------- writing


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _require_finite(x: np.ndarray, name: str, path: object, where: str = "") -> None:
    if not np.isfinite(x).all():
        raise FastMRIFormatError(path, f"{name} contains NaN or Inf values{where}")


def write_fastmri(
    path: str | Path,
    kspace: Any,
    reconstruction_rss: Any | None = None,
    header: bytes | str | None = None,
    attrs: Mapping[str, Any] | None = None,
    mask: Any | None = None,
    maps: Any | None = None,
    kind: str = "2d",
) -> Path:
    """Write one volume in the fastMRI layout (module docstring), atomically; returns the path.

    Arrays may be numpy arrays or torch tensors. Everything is validated before anything is
    written; the file is written to a temporary file in the same folder and moved over ``path``
    with ``os.replace``, so an existing file is never left half-written. ``attrs["max"]`` and
    ``attrs["norm"]`` are set from ``reconstruction_rss`` when given; a default header
    (:func:`make_ismrmrd_header`) is generated when ``header`` is ``None``.
    """
    path = Path(path)
    kind = _check_kind(kind, path)
    kspace, target, maps, mask = (
        None if x is None else _as_numpy(x) for x in (kspace, reconstruction_rss, maps, mask)
    )
    _check_layout(path, kind, kspace, target, maps, mask)
    arrays = {"kspace": kspace, "reconstruction_rss": target, "maps": maps, "mask": mask}
    for name, array in arrays.items():
        if array is not None:
            _require_finite(array, name, path)
    if mask is not None and not np.isin(mask, (0, 1)).all():
        raise FastMRIFormatError(path, "mask must contain only 0 and 1")
    attrs = dict(attrs or {})
    if header is None:
        depth = kspace.shape[2] if kind == "3d" else 1
        recon = kspace.shape[-2:] if target is None else target.shape[-2:]
        header = make_ismrmrd_header(
            (*kspace.shape[-2:], depth),
            (*recon, depth),
            acquisition=attrs.get("acquisition"),
            n_coils=kspace.shape[1],
            n_slices=kspace.shape[0],
            n_phases=kspace.shape[2] if kind == "cine" else None,
        )
    header = header.encode("utf-8") if isinstance(header, str) else bytes(header)
    parse_ismrmrd_header(header, source=path)
    if target is not None:
        attrs["max"] = float(target.max())
        attrs["norm"] = float(np.linalg.norm(target))
    attrs["gleam_kind"] = kind

    path.parent.mkdir(parents=True, exist_ok=True)
    # 0o600: the mode these files have always had (they were made with tempfile.mkstemp)
    with atomic_path(path, permissions=0o600) as tmp, h5py.File(tmp, "w") as hf:
        for name, array in arrays.items():
            if array is not None:
                dtype = np.complex64 if array.dtype.kind == "c" else np.float32
                hf.create_dataset(name, data=array.astype(dtype, copy=False))
        hf.create_dataset("ismrmrd_header", data=header)
        for key, value in attrs.items():
            try:
                hf.attrs[key] = value
            except (TypeError, ValueError) as err:
                raise FastMRIFormatError(path, f"cannot store attr {key!r}: {err}") from err
    return path


# ----------------------------------------------------------------------------------- reading


@contextmanager
def _open(path: str | Path) -> Iterator[tuple[h5py.File, FastMRIInfo]]:
    """Open a file read-only and validate its layout; yields the file and its info."""
    path = Path(path)
    if not path.exists():
        raise FastMRIFileNotFoundError(path, "file not found")
    if path.is_dir():
        raise FastMRIFormatError(path, "is a directory, not an HDF5 file")
    try:
        hf = h5py.File(path, "r")
    except OSError as err:
        raise FastMRIFormatError(
            path, f"not a readable HDF5 file (not HDF5, truncated or corrupt): {err}"
        ) from err
    with hf:
        yield hf, _info(hf, path)


def _dataset(hf: h5py.File, name: str, path: Path) -> h5py.Dataset | None:
    if name not in hf:
        return None
    node = hf[name]
    if not isinstance(node, h5py.Dataset):
        raise FastMRIFormatError(path, f"{name!r} is a {type(node).__name__}, not a dataset")
    try:
        dtype = node.dtype  # h5py maps the HDF5 datatype to numpy here; it may not map
    except (ValueError, TypeError) as err:  # e.g. a float of odd precision, a non-UTF-8 name
        raise FastMRIFormatError(
            path, f"{name!r} has an unsupported HDF5 datatype ({type(err).__name__}: {err})"
        ) from err
    check_hdf5_dtype(path, repr(name), dtype)
    return node


def _attrs(hf: h5py.File, path: Path) -> dict[str, Any]:
    """The file's attrs as plain values; a datatype numpy cannot represent is a format error."""
    check_vlen_attributes(path, hf)  # before libhdf5 allocates what a descriptor claims
    out = {}
    for key in hf.attrs:
        try:
            dtype = hf.attrs.get_id(key).dtype
        except (ValueError, TypeError) as err:  # e.g. a float of odd precision
            raise FastMRIFormatError(
                path, f"attr {key!r} has an unsupported HDF5 datatype ({type(err).__name__}: {err})"
            ) from err
        check_hdf5_dtype(path, f"attr {key!r}", dtype)
        out[key] = _plain(hf.attrs[key])
    return out


def _info(hf: h5py.File, path: Path) -> FastMRIInfo:
    try:
        kspace = _dataset(hf, "kspace", path)
        if kspace is None:
            raise FastMRIFormatError(path, f"no 'kspace' dataset (found {sorted(map(str, hf))})")
        target, maps, mask = (_dataset(hf, n, path) for n in ("reconstruction_rss", "maps", "mask"))
        arrays = [ds for ds in (kspace, target, maps, mask) if ds is not None]
        check_hdf5_heaps(path, raw_extents(arrays))  # before any variable-length value is read
        attrs = _attrs(hf, path)
        header_ds = _dataset(hf, "ismrmrd_header", path)
        if header_ds is not None:
            if header_ds.id.get_type().get_class() != h5py.h5t.STRING:
                raise FastMRIFormatError(
                    path, f"ismrmrd_header is not a string but {header_ds.dtype}"
                )
            check_array_size(path, "ismrmrd_header", header_ds.shape, header_ds.dtype.itemsize)
            check_chunk_count(path, "ismrmrd_header", header_ds.shape, header_ds.chunks)
            check_vlen_sizes(path, "ismrmrd_header", header_ds)
        raw_header = None if header_ds is None else header_ds[()]
    except (OSError, RuntimeError, KeyError) as err:
        raise FastMRIFormatError(path, f"corrupt HDF5 file: {err}") from err
    kind = _check_kind(attrs.get("gleam_kind", "2d"), path)
    _check_layout(path, kind, kspace, target, maps, mask)
    header = {} if raw_header is None else parse_ismrmrd_header(raw_header, source=path)
    return FastMRIInfo(
        path=path,
        kind=kind,
        num_slices=kspace.shape[0],
        kspace_shape=tuple(kspace.shape),
        has_target=target is not None,
        target_shape=None if target is None else tuple(target.shape),
        has_maps=maps is not None,
        has_mask=mask is not None,
        header=header,
        attrs=attrs,
    )


def inspect_fastmri(path: str | Path) -> FastMRIInfo:
    """Validate a file's layout and return its :class:`FastMRIInfo`; reads no array data."""
    with _open(path) as (_, info):
        return info


def _selection(slices: int | slice | None, n: int, path: Path) -> range:
    if slices is None:
        return range(n)
    if isinstance(slices, slice):
        selected = range(n)[slices]
        if selected.step < 1:
            raise ValueError(f"{path}: slices must run forward, got {slices}")
        return selected
    if isinstance(slices, (int, np.integer)) and not isinstance(slices, bool):
        if not -n <= slices < n:
            raise IndexError(f"{path}: slice {slices} out of range for {n} slices")
        index = int(slices) % n
        return range(index, index + 1)
    raise TypeError(f"slices must be None, an int or a slice, got {type(slices).__name__}")


def read_fastmri(path: str | Path, slices: int | slice | None = None) -> FastMRIVolume:
    """Read a file (all slices, one slice ``int`` or a ``slice``); the slice axis is always kept.

    Validates the layout first and checks the k-space and maps actually read for NaN / Inf.
    Raises :class:`FastMRIFormatError` naming the file and the problem.
    """
    with _open(path) as (hf, info):
        sel = _selection(slices, info.num_slices, info.path)
        index = slice(sel.start, sel.stop, sel.step)
        where = f" (slices {sel.start}..{sel.stop - 1})" if sel else ""
        claimed: list[tuple[str, int]] = []
        for name, present, out_itemsize in (
            ("kspace", True, 8), ("maps", info.has_maps, 8),
            ("reconstruction_rss", info.has_target, 4), ("mask", info.has_mask, 4),
        ):  # fmt: skip
            if present:  # refuse what the file claims before reading it
                ds = hf[name]
                shape = ds.shape if name == "mask" else (len(sel), *ds.shape[1:])
                # the array as stored and, when the dtype differs, its converted copy
                itemsize = ds.dtype.itemsize + (
                    out_itemsize if ds.dtype.itemsize != out_itemsize else 0
                )
                claimed.append((name, check_array_size(info.path, name, shape, itemsize)))
                check_chunk_count(info.path, name, shape, ds.chunks)
        names = " + ".join(name for name, _ in claimed)
        check_array_size(info.path, f"the arrays read ({names})", (sum(n for _, n in claimed),), 1)
        try:
            kspace = hf["kspace"][index].astype(np.complex64, copy=False)
            maps = hf["maps"][index].astype(np.complex64, copy=False) if info.has_maps else None
            target = hf["reconstruction_rss"][index].astype(np.float32) if info.has_target else None
            mask = hf["mask"][()].astype(np.float32) if info.has_mask else None
        except (OSError, RuntimeError) as err:
            raise FastMRIFormatError(info.path, f"corrupt HDF5 data: {err}") from err
    _require_finite(kspace, "kspace", info.path, where)
    if maps is not None:
        _require_finite(maps, "maps", info.path, where)
    return FastMRIVolume(
        kspace=kspace,
        reconstruction_rss=target,
        header=info.header,
        attrs=info.attrs,
        mask=mask,
        maps=maps,
        kind=info.kind,
        path=info.path,
        slices=sel,
    )


def is_fastmri_layout(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file with a ``kspace`` dataset (else: raw data to convert)."""
    path = Path(path)
    if path.suffix != ".h5" or not path.exists() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as hf:
        return "kspace" in hf
