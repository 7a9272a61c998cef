"""An ISMRMRD HDF5 file as read, before any k-space is placed: its XML header with the encoding
limits and its acquisition table, both checked (datatypes, sizes, variable-length claims, global
heaps) before libhdf5 reads a value. :mod:`gleam_mri.data.ismrmrd_raw` places the acquisitions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.ismrmrd_header import _find, _local, parse_ismrmrd_header
from gleam_mri.data.limits import (
    check_array_size,
    check_hdf5_dtype,
    check_hdf5_heaps,
    check_vlen_sizes,
)

LIMIT_NAMES = {
    "kspace_encode_step_1": "kspace_encoding_step_1",
    "kspace_encode_step_2": "kspace_encoding_step_2",
    "slice": "slice",
    "phase": "phase",
    "average": "average",
    "repetition": "repetition",
    "contrast": "contrast",
    "set": "set",
}
_CHUNK = 4096


def _limits(root: ET.Element, source: Path) -> dict[str, tuple[int, int, int]]:
    """``{limit name: (minimum, maximum, center)}`` of the first encoding's encodingLimits."""
    box = _find(root, "encoding", "encodingLimits")
    out: dict[str, tuple[int, int, int]] = {}
    for node in [] if box is None else list(box):
        values = []
        for part in ("minimum", "maximum", "center"):
            child = _find(node, part)
            try:
                values.append(int(child.text.strip()) if child is not None and child.text else 0)
            except ValueError as err:
                raise FastMRIFormatError(
                    source, f"encodingLimits/{_local(node.tag)}/{part} is not an integer"
                ) from err
        if values[0] > values[1]:
            raise FastMRIFormatError(
                source, f"encodingLimits/{_local(node.tag)} has minimum > maximum: {values}"
            )
        out[_local(node.tag)] = (values[0], values[1], values[2])
    return out


def _dtype(ds: h5py.Dataset, path: Path) -> np.dtype:
    """The numpy dtype of ``ds``; an HDF5 datatype numpy cannot represent is a format error."""
    try:
        dtype = ds.dtype
    except (ValueError, TypeError) as err:  # e.g. a float of odd precision, a non-UTF-8 name
        raise FastMRIFormatError(
            path, f"{ds.name}: unsupported HDF5 datatype ({type(err).__name__}: {err})"
        ) from err
    check_hdf5_dtype(path, ds.name, dtype)
    return dtype


def read_header(hf: h5py.File, path: Path) -> dict[str, Any]:
    """The XML header of ``hf`` parsed (:func:`parse_ismrmrd_header`), with ``"xml"`` (the text)
    and ``"limits"`` (``{name: (minimum, maximum, center)}``); format errors name ``path``."""
    if "dataset/xml" not in hf:
        raise FastMRIFormatError(path, "no ISMRMRD header: /dataset/xml is missing")
    node = hf["dataset/xml"]
    if not isinstance(node, h5py.Dataset):
        raise FastMRIFormatError(path, "/dataset/xml is a group, not the XML header")
    if node.id.get_type().get_class() != h5py.h5t.STRING:  # only strings reach libhdf5's reader
        raise FastMRIFormatError(
            path,
            f"/dataset/xml is not a string but {_dtype(node, path)} (HDF5 type class "
            f"{node.id.get_type().get_class()})",
        )
    check_array_size(path, "/dataset/xml", node.shape, _dtype(node, path).itemsize)
    check_vlen_sizes(path, "/dataset/xml", node)
    raw = node[()]
    raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) and raw.size else raw
    xml = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    info = parse_ismrmrd_header(xml.encode("utf-8"), source=path)
    if info["encoding_size"] is None:
        raise FastMRIFormatError(path, "ISMRMRD header has no encoding/encodedSpace/matrixSize")
    if min(info["encoding_size"]) < 1:
        raise FastMRIFormatError(path, f"encodedSpace matrixSize {info['encoding_size']} < 1")
    info["limits"] = _limits(ET.fromstring(xml.encode("utf-8")), path)
    info["xml"] = xml
    return info


class open_ismrmrd:
    """``h5py.File`` in read mode, with missing / non-HDF5 files reported by name."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FastMRIFileNotFoundError(path, "file not found")
        try:
            self.hf = h5py.File(path, "r")
        except OSError as err:
            raise FastMRIFormatError(path, f"not an HDF5 file ({err})") from err

    def __enter__(self) -> h5py.File:
        return self.hf

    def __exit__(self, *exc: object) -> None:
        self.hf.close()


_HEAD_FIELDS = (
    "flags", "number_of_samples", "active_channels", "discard_pre", "discard_post",
    "center_sample", "encoding_space_ref",
)  # fmt: skip


def _check_head_fields(head: np.dtype, path: Path) -> None:
    """Raise unless the acquisition header has the integer fields (and counters) read here."""

    def missing(dtype: np.dtype, names: Any) -> list[str]:
        fields = dtype.fields or {}
        return [
            n
            for n in names
            if n not in fields or fields[n][0].kind not in "iu" or fields[n][0].shape
        ]

    if head.fields is None or "idx" not in head.fields or head.fields["idx"][0].fields is None:
        raise FastMRIFormatError(path, "/dataset/data: acquisition header has no 'idx' counters")
    bad = missing(head, _HEAD_FIELDS) + [f"idx.{n}" for n in missing(head["idx"], LIMIT_NAMES)]
    if bad:
        raise FastMRIFormatError(
            path, f"/dataset/data: acquisition header lacks integer fields {bad}"
        )


def read_tables(hf: h5py.File, path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The parsed header and the acquisition records (in chunks), checked before reading."""
    check_hdf5_heaps(path)  # before any variable-length value (XML, samples) is read
    info = read_header(hf, path)
    if "dataset/data" not in hf:
        raise FastMRIFormatError(path, "no acquisitions: /dataset/data is missing")
    data = hf["dataset/data"]
    dtype = _dtype(data, path) if isinstance(data, h5py.Dataset) else None
    if (
        dtype is None
        or data.ndim != 1
        or dtype.names is None
        or not {"head", "data"} <= set(dtype.names)
    ):
        raise FastMRIFormatError(path, "/dataset/data is not an ISMRMRD acquisition table")
    _check_head_fields(dtype["head"], path)
    ftype = data.id.get_type()
    for i in range(ftype.get_nmembers()):  # traj and data: variable-length float32, nothing else
        name, member = ftype.get_member_name(i), ftype.get_member_type(i)
        if name in (b"traj", b"data") and not (
            member.get_class() == h5py.h5t.VLEN
            and member.get_super().get_class() == h5py.h5t.FLOAT
            and member.get_super().get_size() == 4
        ):
            raise FastMRIFormatError(
                path, f"/dataset/data: {name.decode()!r} is not variable-length float32 samples"
            )
    check_array_size(path, "/dataset/data", data.shape, dtype.itemsize)
    check_vlen_sizes(path, "/dataset/data", data)
    return info, [data[i : i + _CHUNK] for i in range(0, data.shape[0], _CHUNK)]
