"""ISMRMRD XML headers: writing the fields fastMRI reads, and parsing them back tolerantly."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.data.errors import FastMRIFormatError

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
_GYROMAGNETIC_HZ_PER_T = 42.577478518e6


def _el(parent: ET.Element, name: str, text: object | None = None) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ISMRMRD_NS}}}{name}")
    if text is not None:
        child.text = str(text)
    return child


def _xyz(parent: ET.Element, name: str, values: Sequence[float]) -> None:
    box = _el(parent, name)
    for axis, value in zip("xyz", values, strict=True):
        _el(box, axis, value)


def _limit(parent: ET.Element, name: str, maximum: int, center: int) -> None:
    box = _el(parent, name)
    _el(box, "minimum", 0)
    _el(box, "maximum", maximum)
    _el(box, "center", center)


def _triple(values: Sequence[float], name: str) -> tuple[float, ...]:
    values = tuple(values)
    if len(values) != 3:
        raise ValueError(f"{name} must have three entries (x, y, z), got {values}")
    return values


def make_ismrmrd_header(
    encoding_size: Sequence[int],
    recon_size: Sequence[int] | None = None,
    fov_mm: Sequence[float] | None = None,
    recon_fov_mm: Sequence[float] | None = None,
    acquisition: str | None = None,
    enc_limits_center: int | None = None,
    enc_limits_max: int | None = None,
    n_coils: int | None = None,
    n_slices: int | None = None,
    n_phases: int | None = None,
    field_strength_t: float = 3.0,
) -> bytes:
    """A minimal valid ISMRMRD XML header (UTF-8 bytes) in fastMRI's conventions.

    ``encoding_size`` / ``recon_size`` are ``(x, y, z)`` = ``(H, W, Z or 1)``. ``fov_mm`` defaults
    to 1 mm voxels; ``recon_fov_mm`` to the encoded voxel size times ``recon_size``.
    ``kspace_encoding_step_1`` spans ``0..enc_limits_max`` (default ``y - 1``) around
    ``enc_limits_center`` (default ``y // 2``). ``n_slices`` and ``n_phases`` (cine frames) add
    ``slice`` and ``phase`` encoding limits.
    """
    enc = tuple(int(v) for v in _triple(encoding_size, "encoding_size"))
    rec = enc if recon_size is None else tuple(int(v) for v in _triple(recon_size, "recon_size"))
    if min(enc + rec) < 1:
        raise ValueError(f"matrix sizes must be >= 1, got encoding {enc}, recon {rec}")
    fov = tuple(float(v) for v in enc) if fov_mm is None else _triple(fov_mm, "fov_mm")
    if recon_fov_mm is None:
        recon_fov_mm = tuple(f / e * r for f, e, r in zip(fov, enc, rec, strict=True))
    rfov = _triple(recon_fov_mm, "recon_fov_mm")
    center = enc[1] // 2 if enc_limits_center is None else int(enc_limits_center)
    maximum = enc[1] - 1 if enc_limits_max is None else int(enc_limits_max)
    if not 0 <= center <= maximum:
        raise ValueError(f"need 0 <= enc_limits_center <= enc_limits_max, got {center}, {maximum}")

    root = ET.Element(f"{{{ISMRMRD_NS}}}ismrmrdHeader")
    if acquisition is not None:
        _el(_el(root, "measurementInformation"), "protocolName", acquisition)
    system = _el(root, "acquisitionSystemInformation")
    _el(system, "systemFieldStrength_T", field_strength_t)
    if n_coils is not None:
        _el(system, "receiverChannels", int(n_coils))
    conditions = _el(root, "experimentalConditions")
    _el(conditions, "H1resonanceFrequency_Hz", round(_GYROMAGNETIC_HZ_PER_T * field_strength_t))
    encoding = _el(root, "encoding")
    for name, size, box_fov in (("encodedSpace", enc, fov), ("reconSpace", rec, rfov)):
        space = _el(encoding, name)
        _xyz(space, "matrixSize", size)
        _xyz(space, "fieldOfView_mm", box_fov)
    limits = _el(encoding, "encodingLimits")
    _limit(limits, "kspace_encoding_step_1", maximum, center)
    if enc[2] > 1:
        _limit(limits, "kspace_encoding_step_2", enc[2] - 1, enc[2] // 2)
    if n_slices is not None:
        _limit(limits, "slice", int(n_slices) - 1, 0)
    if n_phases is not None:
        _limit(limits, "phase", int(n_phases) - 1, 0)
    _el(encoding, "trajectory", "cartesian")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, *names: str) -> ET.Element | None:
    node: ET.Element | None = root
    for name in names:
        node = next((c for c in node if _local(c.tag) == name), None) if node is not None else None
    return node


def _number(root: ET.Element, names: Sequence[str], cast: type, source: object) -> Any:
    node = _find(root, *names)
    if node is None or node.text is None or not node.text.strip():
        return None
    try:
        return cast(node.text.strip())
    except ValueError as err:
        raise FastMRIFormatError(
            source, f"ISMRMRD header field {'/'.join(names)} is not a number: {node.text!r}"
        ) from err


def _xyz_of(root: ET.Element, names: Sequence[str], cast: type, source: object) -> tuple | None:
    values = tuple(_number(root, [*names, axis], cast, source) for axis in "xyz")
    return None if any(v is None for v in values) else values


def parse_ismrmrd_header(xml: bytes | str, source: str | Path | None = None) -> dict[str, Any]:
    """The fields of an ISMRMRD XML header that gleam-mri and fastMRI use, as a dict.

    Keys: ``encoding_size``, ``recon_size`` (``(x, y, z)`` ints), ``encoding_fov_mm``,
    ``recon_fov_mm`` (float triples), ``enc_limits_min``, ``enc_limits_max``,
    ``enc_limits_center`` (``kspace_encoding_step_1``), ``padding_left``, ``padding_right``
    (fastMRI's definitions), ``n_coils``, ``acquisition``, ``trajectory``. Missing optional fields
    are ``None``. Malformed XML raises :class:`FastMRIFormatError` naming ``source``.
    """
    if isinstance(xml, np.ndarray):
        if xml.size != 1:
            raise FastMRIFormatError(
                source, f"ISMRMRD header must be one string, got an array of shape {xml.shape}"
            )
        xml = xml.item()
    if not isinstance(xml, (bytes, str)):
        raise FastMRIFormatError(source, f"ISMRMRD header must be bytes or str, got {type(xml)}")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise FastMRIFormatError(source, f"ISMRMRD header is not well-formed XML: {err}") from err
    except (LookupError, ValueError) as err:  # the XML declaration names an unusable encoding
        raise FastMRIFormatError(
            source, f"ISMRMRD header declares an encoding that cannot be decoded: {err}"
        ) from err
    if _local(root.tag) != "ismrmrdHeader":
        raise FastMRIFormatError(
            source, f"ISMRMRD header root is <{_local(root.tag)}>, expected <ismrmrdHeader>"
        )
    lims = ("encoding", "encodingLimits", "kspace_encoding_step_1")
    info: dict[str, Any] = {
        "encoding_size": _xyz_of(root, ("encoding", "encodedSpace", "matrixSize"), int, source),
        "recon_size": _xyz_of(root, ("encoding", "reconSpace", "matrixSize"), int, source),
        "encoding_fov_mm": _xyz_of(
            root, ("encoding", "encodedSpace", "fieldOfView_mm"), float, source
        ),
        "recon_fov_mm": _xyz_of(root, ("encoding", "reconSpace", "fieldOfView_mm"), float, source),
        "enc_limits_min": _number(root, [*lims, "minimum"], int, source),
        "enc_limits_max": _number(root, [*lims, "maximum"], int, source),
        "enc_limits_center": _number(root, [*lims, "center"], int, source),
        "n_coils": _number(root, ["acquisitionSystemInformation", "receiverChannels"], int, source),
        "acquisition": _number(root, ["measurementInformation", "protocolName"], str, source),
        "trajectory": _number(root, ["encoding", "trajectory"], str, source),
    }
    info["padding_left"] = info["padding_right"] = None
    if info["encoding_size"] and None not in (info["enc_limits_center"], info["enc_limits_max"]):
        info["padding_left"] = info["encoding_size"][1] // 2 - info["enc_limits_center"]
        info["padding_right"] = info["padding_left"] + info["enc_limits_max"] + 1
    return info
