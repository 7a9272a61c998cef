"""3D Cartesian k-space as 2D slices along the readout (``gleam convert --slices readout``).

The GLEAM paper trains its 2D networks on the mridata.org 3D FSE knees one readout position at a
time: the readout ``kx`` is fully sampled in every acquisition, so an inverse FFT along it is
exact and separates the volume into independent 2D problems, one per image row ``x``, whose
k-space ``(coils, ky, kz)`` is undersampled by a 2D (Poisson-disc) mask over both phase encodes.

Input: a 3D acquisition as the raw readers give it (:class:`~gleam_mri.data.ismrmrd_raw.RawKspace`
of kind ``"3d"``), k-space ``(S, C, Z, X, Y)`` = ``(slabs, coils, kz, kx, ky)``. Output: a 2D file
in the fastMRI layout (``gleam_kind`` ``"2d"``):

- ``kspace`` complex64 ``(S * nx, C, Y, Z)`` = ``(x, coils, ky, kz)``: the centred orthonormal
  inverse FFT along ``kx`` (:func:`gleam_mri.fft.centred_fft`), with the readout oversampling
  removed (``nx = X / 2``, the central window, as the ISMRMRD reader does) where the header's
  encoded x is twice the recon x. ``ky`` is on the fastMRI readout axis ``H``, ``kz`` on ``W``;
  a 2D Poisson-disc mask covers both (``physics/poisson.py``).
- ``reconstruction_rss`` float32 ``(S * nx, y, z)`` when every ``(ky, kz)`` line was acquired:
  the RSS of the coil images (inverse FFT over ``ky, kz``), cropped to the recon matrix where it
  is smaller, as :func:`~gleam_mri.data.raw_kspace.rss_image` does for fully sampled data.
  Undersampled acquisitions keep zeros at the unmeasured samples and get neither a target nor a
  ``mask`` (a ``(ky, kz)`` mask has no place in the 2D layout): they are for self-supervised
  training (``train.supervision=self`` finds the measured samples from the non-zero k-space).
- ``ismrmrd_header``: the original XML with encodedSpace / reconSpace ``(x, y, z)`` set to
  ``(ky, kz, 1)`` sizes and fields of view (z = one readout position), ``kspace_encoding_step_1``
  set to the former ``kspace_encoding_step_2`` limits (the ``W`` axis is now kz) and ``slice``
  limits ``0 .. S * nx - 1``; attrs ``gleam_slices = "readout"``, ``source``, ``acquisition``.

Memory: the transform runs on chunks of ``(coil, kz planes)`` (``chunk_bytes``, 256 MiB by
default) written straight into the one output array, and the RSS on chunks of slices, so the peak
is the reader's k-space plus the output plus a few chunks (a 320 x 8 x 320 x 256 knee read at 2x
readout oversampling: 3.4 GB in, 1.7 GB out). The ISMRMRD file is read with the oversampling kept
(``remove_oversampling=False``): cropping after the one inverse FFT equals the reader's
inverse-FFT / crop / FFT followed by another inverse FFT, without its full-size temporaries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.crop import center_crop
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.ismrmrd_header import ISMRMRD_NS, _el, _find
from gleam_mri.data.raw_kspace import RawKspace
from gleam_mri.fft import centred_fft
from gleam_mri.physics.coils import rss_of_kspace

SLICE_MODES = ("native", "readout")
CHUNK_BYTES = 256 * 2**20
MAPS_CALIB = 20  # the GLEAM code's (meddlr's) calibration width for the knee maps
# schema order of encodingLimits' children (new ones are inserted where they belong)
_LIMIT_ORDER = (
    "kspace_encoding_step_0", "kspace_encoding_step_1", "kspace_encoding_step_2", "average",
    "slice", "contrast", "phase", "repetition", "set", "segment",
)  # fmt: skip


def readout_slices(
    kspace: np.ndarray, nx: int | None = None, chunk_bytes: int = CHUNK_BYTES
) -> np.ndarray:
    """Hybrid ``(x, ky, kz)`` slices ``(S * nx, C, Y, Z)`` complex64 of 3D k-space.

    ``kspace`` complex ``(S, C, Z, X, Y)`` (gleam's 3D layout, readout ``X`` on axis -2).
    Centred orthonormal inverse FFT along ``X``, then the central ``nx`` positions (DC-keeping
    window of :func:`~gleam_mri.crop.center_crop`; ``None`` keeps all ``X``). Works on chunks of
    at most about ``chunk_bytes`` (one coil, several kz planes) written into the output.
    """
    if kspace.ndim != 5:
        raise ValueError(f"3D k-space must be (S, C, Z, X, Y), got shape {kspace.shape}")
    s_n, c_n, z_n, x_n, y_n = kspace.shape
    nx = x_n if nx is None else int(nx)
    if not 1 <= nx <= x_n:
        raise ValueError(f"cannot keep {nx} of {x_n} readout positions")
    out = np.empty((s_n, nx, c_n, y_n, z_n), np.complex64)
    planes = max(1, int(chunk_bytes) // (x_n * y_n * 8))
    for s in range(s_n):
        for c in range(c_n):
            for z0 in range(0, z_n, planes):
                block = kspace[s, c, z0 : z0 + planes]  # (z, X, Y)
                image = centred_fft(block, (1,), inverse=True)
                image = center_crop(image, (nx,), axes=(1,), keep_dc=True)
                out[s, :, c, :, z0 : z0 + planes] = image.transpose(1, 2, 0)
    return out.reshape(s_n * nx, c_n, y_n, z_n)


def rss_slices(
    kspace: np.ndarray, recon_size: tuple[int, int] | None = None, chunk_bytes: int = CHUNK_BYTES
) -> np.ndarray:
    """RSS images ``(N, y, z)`` float32 of 2D k-space ``(N, C, Y, Z)``, in chunks of slices.

    Inverse FFT over ``(Y, Z)``, root-sum-of-squares over coils, central DC-keeping crop to
    ``recon_size`` on each axis where that is smaller (as the raw readers' targets).
    """
    n, c_n, y_n, z_n = kspace.shape
    size = [y_n, z_n]
    if recon_size is not None:
        size = [r if 1 <= r < full else full for r, full in zip(recon_size, size, strict=True)]
    out = np.empty((n, *size), np.float32)
    step = max(1, int(chunk_bytes) // (c_n * y_n * z_n * 8))
    for i in range(0, n, step):
        image = rss_of_kspace(kspace[i : i + step], 2, dim=1)
        out[i : i + step] = center_crop(image, size, axes=(-2, -1), keep_dc=True)
    return out


def _set_xyz(space: ET.Element | None, name: str, values: tuple[Any, Any, Any]) -> None:
    box = _find(space, name) if space is not None else None
    if box is None:
        return
    for axis, value in zip("xyz", values, strict=True):
        node = _find(box, axis)
        node = _el(box, axis) if node is None else node
        node.text = str(value)


def _set_limit(box: ET.Element, name: str, values: tuple[int, int, int] | None) -> None:
    node = _find(box, name)
    if values is None:
        if node is not None:
            box.remove(node)
        return
    if node is None:
        node = ET.Element(f"{{{ISMRMRD_NS}}}{name}")
        after = _LIMIT_ORDER.index(name)
        names = [child.tag.rsplit("}", 1)[-1] for child in box]
        index = sum(1 for n in names if n in _LIMIT_ORDER and _LIMIT_ORDER.index(n) < after)
        box.insert(index, node)
    for part, value in zip(("minimum", "maximum", "center"), values, strict=True):
        child = _find(node, part)
        child = _el(node, part) if child is None else child
        child.text = str(value)


def readout_header(xml: str, header: dict[str, Any], nx: int, n_slices: int, shape: tuple) -> str:
    """The ISMRMRD XML of a 3D acquisition rewritten for its readout slices (module docstring).

    ``header`` is the reader's dict (sizes, fields of view, ``limits``); ``shape`` the output
    k-space ``(N, C, Y, Z)``; ``nx`` readout positions per slab after oversampling removal.
    """
    ET.register_namespace("", ISMRMRD_NS)
    root = ET.fromstring(xml)
    encoding = _find(root, "encoding")
    _, _, y_n, z_n = shape
    enc_fov = header.get("encoding_fov_mm")
    rec_fov = header.get("recon_fov_mm") or enc_fov
    rec = header.get("recon_size") or (nx, y_n, z_n)
    thick = None if rec_fov is None else float(rec_fov[0]) / nx  # one readout position
    if encoding is not None:
        _set_xyz(_find(encoding, "encodedSpace"), "matrixSize", (y_n, z_n, 1))
        _set_xyz(_find(encoding, "reconSpace"), "matrixSize", (rec[1], rec[2], 1))
        if enc_fov is not None:
            _set_xyz(_find(encoding, "encodedSpace"), "fieldOfView_mm", (*enc_fov[1:], thick))
        if rec_fov is not None:
            _set_xyz(_find(encoding, "reconSpace"), "fieldOfView_mm", (*rec_fov[1:], thick))
        box = _find(encoding, "encodingLimits")
        if box is not None:
            limits = header.get("limits") or {}
            kz = limits.get("kspace_encoding_step_2", (0, z_n - 1, z_n // 2))
            _set_limit(box, "kspace_encoding_step_0", None)
            _set_limit(box, "kspace_encoding_step_1", kz)
            _set_limit(box, "kspace_encoding_step_2", None)
            _set_limit(box, "slice", (0, n_slices - 1, 0))
    return ET.tostring(root, encoding="unicode")


def _read_3d(path: Path, partitions: str = "kz") -> tuple[RawKspace, int]:
    """The 3D acquisition of ``path`` and the readout positions ``nx`` to keep per slab."""
    from gleam_mri.data.raw import detect_format, read_raw

    if detect_format(path) == "ismrmrd":
        from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw

        raw = read_ismrmrd_raw(path, remove_oversampling=False, partitions=partitions)
    else:  # twix (whose reader rejects 3D data today) and BART CFL (PHS2 > 1 is kz)
        raw = read_raw(path, partitions)
    source = raw.path
    if raw.kind != "3d":
        shape = tuple(raw.kspace.shape)
        hint = (
            " (a 3D scan whose partitions are stored in the slice counter reads as this: "
            "try --partitions slice-z or slice-kz, see gleam convert --help)"
            if raw.kind == "2d" and shape[0] > 1
            else ""
        )
        raise FastMRIFormatError(
            source,
            f"--slices readout needs a 3D Cartesian acquisition (a kz axis: ISMRMRD "
            f"encodedSpace z > 1 / kspace_encode_step_2, BART PHS2 > 1), but this is a "
            f"{raw.kind} acquisition with k-space {shape}{hint}: convert it without --slices",
        )
    x_n = raw.kspace.shape[-2]
    recon_x = (raw.header.get("recon_size") or (0,))[0]
    nx = x_n // 2 if x_n == 2 * recon_x else x_n
    kz_sampled = raw.mask.any(axis=(0, 1, 3, 4))  # (Z,)
    if int(kz_sampled.sum()) < 2:
        raise FastMRIFormatError(
            source,
            f"the acquisitions sample {int(kz_sampled.sum())} of {kz_sampled.size} kz planes "
            "(kspace_encode_step_2): not a 3D acquisition to split along the readout",
        )
    return raw, nx


def espirit_slices(kspace: np.ndarray, calib: int = MAPS_CALIB) -> np.ndarray:
    """ESPIRiT maps ``(N, C, Y, Z)`` complex64 of fully sampled slices ``(N, C, Y, Z)``.

    One set of maps per slice, from its central ``calib x calib`` block (capped by the slice
    size; :func:`~gleam_mri.data.datasets.espirit_estimate`, kernel 6), as the GLEAM code's data
    preparation estimates them per readout position from a 20 x 20 calibration region.
    """
    import torch

    from gleam_mri.data.datasets import espirit_estimate

    out = np.empty(kspace.shape, np.complex64)
    ones = torch.ones((1, *kspace.shape[2:]))
    for i in range(kspace.shape[0]):
        slice_ = torch.from_numpy(np.ascontiguousarray(kspace[i]))
        out[i] = espirit_estimate(slice_, ones, 2, max_calib_size=calib).numpy()
    return out


def convert_readout_slices(
    path: str | Path,
    out: str | Path,
    maps: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    partitions: str = "kz",
) -> Path:
    """Convert the 3D acquisition in raw-data file ``path`` to readout slices in ``out``.

    Writes a 2D fastMRI-layout file (module docstring) and returns ``out``; ``maps="espirit"``
    also stores per-slice ESPIRiT maps (:func:`espirit_slices`, fully sampled data only) for
    ``data.maps: file``. Raises :class:`FastMRIFormatError` naming the file for 2D / cine
    acquisitions, acquisitions with a single kz plane, maps asked of undersampled data, and
    anything the raw readers refuse. ``partitions``: where an ISMRMRD file keeps the
    partitions (:data:`~gleam_mri.data.ismrmrd_raw.PARTITIONS`).
    """
    if maps not in (None, "none", "espirit"):
        raise ValueError(f'maps must be None, "none" or "espirit", got {maps!r}')
    from gleam_mri.data.fastmri import write_fastmri

    raw, nx = _read_3d(Path(path), partitions)
    header, mask, source = raw.header, raw.mask, raw.path
    kspace = readout_slices(raw.kspace, nx, chunk_bytes)
    del raw  # the 3D k-space is freed before the target is computed and the file written
    recon = header.get("recon_size")
    fully = bool(mask.all())
    if maps == "espirit" and not fully:
        raise FastMRIFormatError(
            source, "--maps espirit needs fully sampled data (every (ky, kz) line acquired)"
        )
    sens = espirit_slices(kspace) if maps == "espirit" else None
    recon_yz = None if recon is None else recon[1:]
    target = rss_slices(kspace, recon_yz, chunk_bytes) if fully else None
    xml = header.get("xml")
    if xml is not None:
        xml = readout_header(xml, header, nx, kspace.shape[0], kspace.shape)
    attrs: dict[str, Any] = {
        "acquisition": header.get("acquisition") or "",
        "source": str(source),
        "gleam_slices": "readout",
        "sampled_fraction": float(mask.mean()),
    }
    if sens is not None:
        attrs["maps_calib"] = MAPS_CALIB
    return write_fastmri(out, kspace, target, header=xml, attrs=attrs, maps=sens, kind="2d")
