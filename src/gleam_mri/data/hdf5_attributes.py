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
from pathlib import Path
from typing import Any

from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.hdf5_format import hdf5_sizes, header_messages, read_uint, vlen_members

_ATTRIBUTE = 0x000C


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
