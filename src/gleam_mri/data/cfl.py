"""BART's CFL/HDR format: read, write, and convert k-space to gleam's layout.

A BART array ``base`` is two files. ``base.hdr`` is text: a ``# Dimensions`` line, then the
dimensions separated by spaces (BART writes all 16, padded with 1s, and a trailing space); other
``# ...`` sections (``# Command``, ``# Files``, ``# Creator``) may follow and are ignored.
``base.cfl`` is the raw data: complex64 (interleaved little-endian float32 real / imag) in
column-major (Fortran) order, so dimension 0 varies fastest.

BART's dimension order (``misc/mri.h``), see :data:`BART_DIMS`::

    0 READ   1 PHS1   2 PHS2   3 COIL   4 MAPS   5 TE     6 COEFF  7 COEFF2
    8 ITER   9 CSHIFT 10 TIME  11 TIME2 12 LEVEL 13 SLICE 14 AVG   15 BATCH

gleam's k-space is ``(C, *D)`` with readout on axis -2 (:func:`cfl_to_gleam`): 2D ``(C, H, W)``,
3D ``(C, Z, H, W)``, cine ``(C, T, H, W)``, where ``H = READ``, ``W = PHS1``, ``Z = PHS2`` and
``T = TIME``. Both layouts use the same centred FFT convention (BART's ``fft -u`` equals
:func:`gleam_mri.fft.fftnc`), so no k-space reordering is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gleam_mri.atomic import atomic_path
from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.limits import check_array_size
from gleam_mri.data.raw_kspace import RawKspace

BART_DIMS: tuple[str, ...] = (
    "READ",
    "PHS1",
    "PHS2",
    "COIL",
    "MAPS",
    "TE",
    "COEFF",
    "COEFF2",
    "ITER",
    "CSHIFT",
    "TIME",
    "TIME2",
    "LEVEL",
    "SLICE",
    "AVG",
    "BATCH",
)
READ_DIM, PHS1_DIM, PHS2_DIM, COIL_DIM, TIME_DIM = 0, 1, 2, 3, 10
N_DIMS = len(BART_DIMS)  # 16, what BART writes


class CflFormatError(FastMRIFormatError):
    """A BART CFL/HDR pair is missing, malformed or inconsistent; the message names the file."""


def _base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path


def _suffixed(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def write_cfl(base_path: str | Path, array: np.ndarray) -> tuple[Path, Path]:
    """Write ``array`` (any shape with at most 16 axes, cast to complex64) as ``base.hdr/.cfl``.

    The axes are BART's (:data:`BART_DIMS`); the header is padded to 16 dimensions with 1s. Both
    files are written to temporaries and renamed into place. Returns ``(hdr_path, cfl_path)``.
    """
    base = _base(base_path)
    data = np.asarray(array)
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise TypeError(f"{base}: CFL data must be numeric, got dtype {data.dtype}")
    if data.ndim > N_DIMS:
        raise CflFormatError(base, f"CFL arrays have at most {N_DIMS} dimensions, got {data.ndim}")
    data = data.astype(np.complex64)
    if not np.isfinite(data).all():
        raise CflFormatError(base, "refusing to write non-finite (NaN or inf) values")
    dims = list(data.shape) + [1] * (N_DIMS - data.ndim)
    if min(dims) < 1:
        raise CflFormatError(base, f"CFL dimensions must be >= 1, got {tuple(data.shape)}")
    hdr, cfl = _suffixed(base, ".hdr"), _suffixed(base, ".cfl")
    with atomic_path(hdr) as tmp_hdr, atomic_path(cfl) as tmp_cfl:  # .cfl is moved first
        tmp_hdr.write_text("# Dimensions\n" + "".join(f"{d} " for d in dims) + "\n")
        data.ravel(order="F").tofile(tmp_cfl)
    return hdr, cfl


def read_cfl_header(base_path: str | Path) -> tuple[int, ...]:
    """The dimensions in ``base.hdr`` (all of them, as written: usually 16 entries)."""
    hdr = _suffixed(_base(base_path), ".hdr")
    if not hdr.is_file():
        raise FastMRIFileNotFoundError(hdr, "BART header (.hdr) not found")
    lines = [line.strip() for line in hdr.read_text(errors="replace").splitlines()]
    try:
        start = lines.index("# Dimensions")
    except ValueError:
        raise CflFormatError(hdr, "malformed BART header: no '# Dimensions' line") from None
    body = next((line for line in lines[start + 1 :] if line), "")
    if not body or body.startswith("#"):
        raise CflFormatError(hdr, "malformed BART header: no dimensions after '# Dimensions'")
    try:
        dims = tuple(int(token) for token in body.split())
    except ValueError:
        raise CflFormatError(hdr, f"malformed BART header: dimensions line {body!r}") from None
    if min(dims) < 1:
        raise CflFormatError(hdr, f"malformed BART header: dimensions must be >= 1, got {dims}")
    return dims


def read_cfl(base_path: str | Path) -> np.ndarray:
    """Read a BART array as complex64 with BART's axis order (:data:`BART_DIMS`).

    ``base_path`` may name the base or either file. Trailing singleton dimensions are dropped
    (as BART's own ``readcfl.py`` does), keeping at least one axis. Raises :class:`CflFormatError`
    (a ``ValueError``) naming the file for a missing file, a malformed header, a data size that
    does not match the header, or non-finite values.
    """
    base = _base(base_path)
    dims = read_cfl_header(base)
    expected = check_array_size(_suffixed(base, ".hdr"), "BART data (complex64)", dims, 8)
    cfl = _suffixed(base, ".cfl")
    if not cfl.is_file():
        raise FastMRIFileNotFoundError(cfl, "BART data file (.cfl) not found")
    actual = cfl.stat().st_size
    if actual != expected:
        raise CflFormatError(
            cfl,
            f"file has {actual} bytes but the header dimensions {dims} need {expected} (complex64)",
        )
    keep = max((i + 1 for i, d in enumerate(dims) if d > 1), default=1)
    data = np.fromfile(cfl, dtype="<c8").reshape(dims[:keep], order="F")
    if not np.isfinite(data).all():
        raise CflFormatError(cfl, "data contain NaN or inf")
    return data.astype(np.complex64, copy=False)


def _padded(kspace_bart: np.ndarray) -> np.ndarray:
    data = np.asarray(kspace_bart)
    if data.ndim > N_DIMS:
        raise ValueError(f"BART arrays have at most {N_DIMS} dimensions, got {data.ndim}")
    return data.reshape(data.shape + (1,) * (N_DIMS - data.ndim))


def cfl_to_gleam(kspace_bart: np.ndarray) -> np.ndarray:
    """BART k-space ``(READ, PHS1, PHS2, COIL, ..., TIME)`` -> gleam ``(C, *D)`` complex64.

    2D ``(C, H, W)`` when PHS2 and TIME are 1; 3D ``(C, Z, H, W)`` when PHS2 > 1; cine
    ``(C, T, H, W)`` when TIME > 1. ``H = READ``, ``W = PHS1``, ``Z = PHS2``. Any other
    non-singleton BART dimension (MAPS, SLICE, AVG, ...) raises ``ValueError``: select or
    combine it first.
    """
    data = _padded(kspace_bart)
    allowed = {READ_DIM, PHS1_DIM, PHS2_DIM, COIL_DIM, TIME_DIM}
    extra = [f"{BART_DIMS[i]}={n}" for i, n in enumerate(data.shape) if n > 1 and i not in allowed]
    if extra:
        raise ValueError(
            f"cannot map BART dimensions {', '.join(extra)} to gleam k-space; "
            "only READ, PHS1, PHS2, COIL and TIME may exceed 1"
        )
    z, t = data.shape[PHS2_DIM], data.shape[TIME_DIM]
    if z > 1 and t > 1:
        raise ValueError(f"3D cine k-space (PHS2={z}, TIME={t}) is not supported")
    if t > 1:
        axes = (COIL_DIM, TIME_DIM, READ_DIM, PHS1_DIM)
    elif z > 1:
        axes = (COIL_DIM, PHS2_DIM, READ_DIM, PHS1_DIM)
    else:
        axes = (COIL_DIM, READ_DIM, PHS1_DIM)
    rest = tuple(i for i in range(N_DIMS) if i not in axes)
    out = np.transpose(data, axes + rest).reshape(tuple(data.shape[i] for i in axes))
    return np.ascontiguousarray(out, dtype=np.complex64)


def gleam_to_cfl(kspace: np.ndarray, kind: str | None = None) -> np.ndarray:
    """gleam k-space ``(C, H, W)``, ``(C, Z, H, W)`` or ``(C, T, H, W)`` -> BART order, complex64.

    ``kind`` is ``"2d"``, ``"3d"`` or ``"cine"``; it is required for 4-axis input (Z and T cannot
    be told apart by shape). Returns an array with BART's axes (trailing singletons dropped),
    ready for :func:`write_cfl`.
    """
    data = np.asarray(kspace)
    if kind is None:
        if data.ndim != 3:
            raise ValueError(f"pass kind='3d' or 'cine' for 4-axis k-space, got {data.shape}")
        kind = "2d"
    expected_ndim = {"2d": 3, "3d": 4, "cine": 4}
    if kind not in expected_ndim:
        raise ValueError(f"kind must be '2d', '3d' or 'cine', got {kind!r}")
    if data.ndim != expected_ndim[kind]:
        raise ValueError(f"{kind} k-space must have {expected_ndim[kind]} axes, got {data.shape}")
    c, h, w = data.shape[0], data.shape[-2], data.shape[-1]
    if kind == "2d":
        out = np.transpose(data, (1, 2, 0))  # (H, W, C)
        out = out.reshape(h, w, 1, c)
    elif kind == "3d":
        out = np.transpose(data, (2, 3, 1, 0))  # (H, W, Z, C)
    else:
        out = np.transpose(data, (2, 3, 0, 1))  # (H, W, C, T)
        out = out.reshape(h, w, 1, c, *([1] * 6), data.shape[1])
    return np.asarray(out, dtype=np.complex64)


def read_cfl_kspace(path: str | Path) -> RawKspace:
    """BART k-space ``(READ, PHS1, PHS2, COIL, ..., TIME)`` as one gleam sample, mask from zeros."""
    base = Path(path).with_suffix("")
    bart = read_cfl(base)
    dims = bart.shape + (1,) * (16 - bart.ndim)
    kind = "cine" if dims[TIME_DIM] > 1 else "3d" if dims[PHS2_DIM] > 1 else "2d"
    try:
        kspace = cfl_to_gleam(bart)[None]  # (1, C, *D)
    except ValueError as err:
        raise FastMRIFormatError(base.with_suffix(".cfl"), str(err)) from err
    sampled = np.abs(kspace).sum(axis=(1, -2)) > 0  # (1, W) or (1, Z|T, W)
    mask = sampled[:, None, None, :] if kind == "2d" else sampled[:, None, :, None, :]
    return RawKspace(kspace, mask, {}, kind, base.with_suffix(".cfl"))
