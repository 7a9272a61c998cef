"""Cartesian k-space read from a raw-data file, as every raw reader returns it (:class:`RawKspace`).

Shared by the ISMRMRD (:mod:`~gleam_mri.data.ismrmrd_raw`), twix (:mod:`~gleam_mri.data.twix`)
and BART (:mod:`gleam_mri.data.raw`) readers: the array layout, the RSS target of fully sampled
data, readout oversampling removal and the fastMRI-layout writer.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.crop import center_crop
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.ismrmrd_header import _find
from gleam_mri.fft import centred_fft
from gleam_mri.physics.coils import rss_of_kspace


@dataclass(frozen=True)
class RawKspace:
    """Cartesian k-space read from a raw-data file (ISMRMRD or Siemens twix).

    ``kspace`` complex64 in gleam's layout (module docstring; with a leading averages axis when
    averages were kept); ``mask`` bool, broadcastable to ``kspace`` with singleton coil and readout
    axes: 2D ``(S, 1, 1, W)``, 3D / cine ``(S, 1, Z|T, 1, W)``; ``header`` a dict of what was
    parsed (with ``"xml"`` the original XML text when there is one); ``kind`` 2d / 3d / cine.
    """

    kspace: np.ndarray
    mask: np.ndarray
    header: dict[str, Any]
    kind: str
    path: Path
    averages_kept: bool = False

    def to_fastmri(self, path: str | Path) -> Path:
        """Write in the fastMRI layout (:func:`gleam_mri.data.fastmri.write_fastmri`).

        ``reconstruction_rss`` (RSS of the coil images, cropped to the recon matrix) is written
        only when every line is acquired; ``mask`` as ``(W,)`` (2D) or ``(Z|T, W)`` when it is
        the same for all slices (otherwise omitted). The XML header is kept, with encodedSpace x
        set to ``H`` when the readout oversampling was removed.
        """
        from gleam_mri.data.fastmri import write_fastmri

        if self.averages_kept:
            raise FastMRIFormatError(
                path, "cannot write k-space with a separate averages axis; read with average=True"
            )
        mask = self.mask[:, 0, ..., 0, :]  # (S, W) or (S, Z|T, W)
        fmask = mask[0].astype(np.float32) if (mask == mask[:1]).all() else None
        target = rss_image(self.kspace, self.kind, self.header.get("recon_size"))
        target = target if self.mask.all() else None
        xml = self.header.get("xml")
        if xml is not None and self.header.get("oversampling_removed"):
            xml = _set_encoded_x(xml, self.kspace.shape[-2], self.header.get("recon_fov_mm"))
        attrs = {"acquisition": self.header.get("acquisition") or "", "source": str(self.path)}
        return write_fastmri(
            path, self.kspace, target, header=xml, attrs=attrs, mask=fmask, kind=self.kind
        )


def rss_image(kspace: np.ndarray, kind: str, recon_size: Any = None) -> np.ndarray:
    """Root-sum-of-squares image ``(S, [Z|T,] h, w)`` float32 of ``kspace`` ``(S, C, *D)``.

    Centred orthonormal inverse FFT over the encoded axes (3 for 3D, else 2), cropped centrally
    to ``recon_size`` ``(x, y, z)`` where that is smaller.
    """
    out = rss_of_kspace(kspace, 3 if kind == "3d" else 2, dim=1).astype(np.float32)
    if recon_size is not None:
        for axis, size in ((-2, int(recon_size[0])), (-1, int(recon_size[1]))):
            if 1 <= size < out.shape[axis]:
                out = center_crop(out, (size,), axes=(axis,), keep_dc=True)
    return out


def remove_readout_oversampling(kspace: np.ndarray, axis: int = -2) -> np.ndarray:
    """Halve the readout FOV: centred inverse FFT along ``axis``, central crop, FFT back.

    ``kspace`` complex, readout length ``N`` (even) along ``axis`` -> length ``N // 2``; the
    image values inside the kept FOV are unchanged (orthonormal transforms).
    """
    n = kspace.shape[axis]
    if n % 2:
        raise ValueError(f"readout oversampling removal needs an even length, got {n}")
    img = center_crop(centred_fft(kspace, (axis,), inverse=True), (n // 2,), (axis,), keep_dc=True)
    return centred_fft(img, (axis,)).astype(np.complex64)


def _set_encoded_x(xml: str, size: int, recon_fov: Any) -> str:
    ET.register_namespace("", "http://www.ismrm.org/ISMRMRD")
    root = ET.fromstring(xml)
    space = _find(root, "encoding", "encodedSpace")
    node = _find(space, "matrixSize", "x") if space is not None else None
    if node is not None:
        node.text = str(size)
    fov = _find(space, "fieldOfView_mm", "x") if space is not None else None
    if fov is not None and recon_fov is not None:
        fov.text = str(recon_fov[0])
    return ET.tostring(root, encoding="unicode")
