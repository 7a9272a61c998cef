"""HDF5's on-disk structures read as bytes, before libhdf5 reads them: the superblock's sizes,
object header messages, the variable-length parts of a datatype (HDF5 file format
specification). :mod:`~gleam_mri.data.limits`, :mod:`~gleam_mri.data.hdf5_attributes` and
:mod:`~gleam_mri.data.hdf5_datatypes` check what a file claims with them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["hdf5_sizes", "header_messages", "read_uint", "vlen_members"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONTINUATION = 0x0010
_MAX_MESSAGES = 65536  # a bound on the walk of a corrupt header


def hdf5_sizes(buf: memoryview) -> tuple[int, int]:
    """The superblock's "size of offsets" and "size of lengths" (bytes; 8 unless it says so)."""
    base = 0
    while base + 16 <= len(buf):
        if bytes(buf[base : base + 8]) == _HDF5_SIGNATURE:
            at = base + (13 if buf[base + 8] < 2 else 9)  # superblock version 0/1 or 2/3
            return tuple(n if n in (2, 4, 8) else 8 for n in bytes(buf[at : at + 2]))
        base = 512 if base == 0 else 2 * base
    return 8, 8


def read_uint(buf: memoryview, at: int, size: int) -> int:
    """The little-endian unsigned int of ``size`` bytes at ``at`` (``IndexError`` past the end)."""
    if at < 0 or at + size > len(buf):
        raise IndexError(at)
    return int.from_bytes(buf[at : at + size], "little")


def header_messages(
    buf: memoryview, addr: int, off: int, length: int
) -> Iterator[tuple[int, int, int]]:
    """``(type, start, size)`` of the messages of the object header at ``addr`` (v1 or v2),
    following continuation messages; stops at anything malformed (``IndexError`` when a field
    lies past the end of the file)."""
    v2 = bytes(buf[addr : addr + 4]) == b"OHDR"
    if v2:  # "OHDR", version, flags, [times 16], [phase change 4], chunk #0 size (1 to 8 bytes)
        flags = read_uint(buf, addr + 5, 1)
        at = addr + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        chunks = [(at + width, at + width + read_uint(buf, at, width))]
        prefix = 4 + (2 if flags & 0x04 else 0)  # type 1, size 2, flags 1 [, creation order 2]
    elif read_uint(buf, addr, 1) == 1:  # version 1: 12 bytes of header, 4 of padding, then messages
        chunks = [(addr + 16, addr + 16 + read_uint(buf, addr + 8, 4))]
        prefix = 8  # type 2, size 2, flags 1, reserved 3
    else:
        return
    seen, count = set(), 0
    while chunks:
        at, end = chunks.pop(0)
        if at in seen or end > len(buf):
            return
        seen.add(at)
        while at + prefix <= end and count < _MAX_MESSAGES:
            kind = read_uint(buf, at, 1 if v2 else 2)
            size = read_uint(buf, at + (1 if v2 else 2), 2)
            data = at + prefix
            if data + size > end:
                return
            if kind == _CONTINUATION:
                start, n = read_uint(buf, data, off), read_uint(buf, data + off, length)
                if v2:  # "OCHK", messages, checksum
                    chunks.append((start + 4, start + n - 4))
                else:
                    chunks.append((start, start + n))
            else:
                yield kind, data, size
            at, count = data + size, count + 1


def vlen_members(ftype: Any) -> list[tuple[int, int]]:
    """``(byte offset in a record, element size)`` of each variable-length part of a file type."""
    import h5py

    if ftype.get_class() == h5py.h5t.COMPOUND:
        out = []
        for i in range(ftype.get_nmembers()):
            offset = ftype.get_member_offset(i)
            out += [(offset + o, n) for o, n in vlen_members(ftype.get_member_type(i))]
        return out
    if ftype.get_class() == h5py.h5t.VLEN:
        return [(0, ftype.get_super().get_size())]
    if ftype.get_class() == h5py.h5t.STRING and ftype.is_variable_str():
        return [(0, 1)]
    return []
