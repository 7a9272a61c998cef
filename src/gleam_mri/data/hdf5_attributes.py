"""Variable-length HDF5 attributes checked before libhdf5 reads them (found by fuzzing).

A variable-length value (a ``str`` attribute such as fastMRI's ``acquisition`` or gleam's
``gleam_kind``) is stored as a descriptor: its length (4 bytes), the address of a global heap
collection and an object index. libhdf5 allocates the length the descriptor claims before it
looks at the heap, so a file of a few kilobytes whose attribute claims 2 GB makes a reader
allocate 2 GB and only then fail. Datasets' descriptors are checked by
:func:`gleam_mri.data.limits.check_vlen_sizes`; attributes live inside the object header, which
h5py gives no offsets for, so :func:`check_vlen_attributes` walks the object header itself
(HDF5 file format specification, object header versions 1 and 2, attribute message versions 1 to
3) and refuses a claim larger than the file before any attribute is read.

Not covered (no claim is read, nothing is refused): attributes in dense storage (more than eight
attributes on an object: a fractal heap), attributes with a shared datatype or dataspace.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gleam_mri.data.errors import FastMRIFormatError

_ATTRIBUTE, _CONTINUATION = 0x000C, 0x0010
_MAX_MESSAGES = 65536  # a bound on the walk of a corrupt header


def read_uint(buf: memoryview, at: int, size: int) -> int:
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


def _attribute(buf: memoryview, start: int, size: int) -> tuple[bytes, int] | None:
    """``(name, data offset)`` of the attribute message at ``start``; ``None`` when its datatype
    or dataspace is shared (stored elsewhere) or the message is malformed."""
    version, flags = read_uint(buf, start, 1), read_uint(buf, start + 1, 1)
    name_n, type_n, space_n = (read_uint(buf, start + 2 + 2 * i, 2) for i in range(3))
    if version == 1:
        pad = [(n + 7) // 8 * 8 for n in (name_n, type_n, space_n)]
        name_at = start + 8
    elif version in (2, 3):
        if flags & 0x03:
            return None
        pad = [name_n, type_n, space_n]
        name_at = start + 8 + (1 if version == 3 else 0)
    else:
        return None
    data = name_at + sum(pad)
    if data > start + size or name_n < 1:
        return None
    return bytes(buf[name_at : name_at + name_n - 1]), data


def _has_vlen_sequence(ftype: Any) -> bool:
    """Whether a file datatype is or contains a variable-length sequence (not a string).

    A fuzzed file turned a string attribute's type field into an undefined value (6, where 0 is a
    sequence and 1 a string): h5py saw a sequence of bytes, and libhdf5 reading it called its
    write path and crashed (SIGSEGV in ``H5VL_blob_put``)."""
    import h5py

    if ftype.get_class() == h5py.h5t.VLEN:
        return True
    if ftype.get_class() == h5py.h5t.COMPOUND:
        members = range(ftype.get_nmembers())
        return any(_has_vlen_sequence(ftype.get_member_type(i)) for i in members)
    if ftype.get_class() == h5py.h5t.ARRAY:
        return _has_vlen_sequence(ftype.get_super())
    return False


def check_vlen_attributes(path: str | Path, obj: Any) -> None:
    """Refuse ``obj``'s (an h5py group or dataset) variable-length attributes whose descriptors
    claim more bytes than the file holds; call before reading any attribute.

    Raises :class:`FastMRIFormatError` naming the file and the attribute. Reads the object header
    and the descriptors, never a value (module docstring for what is not covered).
    """
    import h5py

    from gleam_mri.data.limits import hdf5_sizes, vlen_members

    vlen = {}
    for name in obj.attrs:
        aid = obj.attrs.get_id(name)
        if _has_vlen_sequence(aid.get_type()):
            raise FastMRIFormatError(
                path,
                f"attribute {name!r} holds variable-length sequences, which no fastMRI, ISMRMRD "
                "or gleam file has (a damaged string type reads as one and crashes libhdf5)",
            )
        members = vlen_members(aid.get_type())
        if members:
            key = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
            vlen[key] = (members, aid.get_type().get_size(), math.prod(aid.shape or ()))
    if not vlen:
        return
    file_size = os.stat(path).st_size
    with open(path, "rb") as fh:
        buf = memoryview(fh.read())
    off, length = hdf5_sizes(buf)
    addr = h5py.h5o.get_info(obj.id).addr
    try:
        for kind, start, size in header_messages(buf, addr, off, length):
            found = _attribute(buf, start, size) if kind == _ATTRIBUTE else None
            if found is None or found[0] not in vlen:
                continue
            members, record, n = vlen[found[0]]
            for i in range(n):
                for at, elem in members:
                    claim = read_uint(buf, found[1] + i * record + at, 4) * elem
                    if claim > file_size:
                        raise FastMRIFormatError(
                            path,
                            f"attribute {found[0].decode(errors='replace')!r} claims a "
                            f"variable-length value of {claim} bytes, more than the whole file "
                            f"({file_size} bytes): corrupt",
                        )
    except IndexError:
        return  # a header that ends early: libhdf5 refuses it on its own
