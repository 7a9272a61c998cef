"""Variable-length datatypes checked in the file before libhdf5 converts them (found by fuzzing).

A variable-length datatype's class bit field holds its type: 0 a sequence, 1 a string. libhdf5
accepts any other value, h5py then reports a sequence, and libhdf5's read of such a value calls
its write path and crashes (SIGSEGV in ``H5VL_blob_put``). h5py does not show the field, so
:func:`check_vlen_type_fields` reads the dataset's datatype message from its object header (HDF5
file format specification, datatype message versions 1 to 4) and refuses any other value.
Parsing stops, refusing nothing, at anything it does not know or that is malformed: libhdf5 then
decides.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.hdf5_format import hdf5_sizes, header_messages, read_uint

_DATATYPE = 0x0003
_MAX_DEPTH = 32  # nesting bound on a corrupt type
_FIXED = {0: 4, 1: 12, 2: 2, 3: 0, 4: 4, 7: 0}  # class -> size of its properties


class _Stop(Exception):
    """A datatype this parser does not follow: stop without a verdict."""


def _name_end(buf: memoryview, at: int, padded: bool) -> int:
    end = bytes(buf[at : at + 65536]).find(b"\0")
    if end < 0:
        raise _Stop
    n = end + 1
    return at + ((n + 7) // 8 * 8 if padded else n)


def _bad_vlen_types(buf: memoryview, at: int, depth: int = 0) -> tuple[int, list[int]]:
    """``(end offset, undefined variable-length type fields)`` of the datatype at ``at``."""
    if depth > _MAX_DEPTH:
        raise _Stop
    head = read_uint(buf, at, 1)
    cls, version = head & 0x0F, head >> 4
    bits = read_uint(buf, at + 1, 3)
    size = read_uint(buf, at + 4, 4)
    p = at + 8
    if cls in _FIXED:
        return p + _FIXED[cls], []
    if cls == 5:  # opaque: an ASCII tag of (bits & 0xff) bytes
        return p + (bits & 0xFF), []
    if cls == 9:  # variable-length: the base type follows
        end, bad = _bad_vlen_types(buf, p, depth + 1)
        return end, bad + ([bits & 0x0F] if bits & 0x0F not in (0, 1) else [])
    if cls == 10:  # array: rank, dimensions [, permutation], base type
        rank = read_uint(buf, p, 1)
        p += (4 + 8 * rank) if version < 3 else (1 + 4 * rank)
        return _bad_vlen_types(buf, p, depth + 1)
    if cls == 6:  # compound
        bad: list[int] = []
        for _ in range(bits & 0xFFFF):
            p = _name_end(buf, p, padded=version < 3)
            if version == 1:
                p += 4 + 1 + 3 + 4 + 4 + 16
            elif version == 2:
                p += 4
            else:
                p += 1 if size < 1 << 8 else 2 if size < 1 << 16 else 3 if size < 1 << 24 else 4
            p, inner = _bad_vlen_types(buf, p, depth + 1)
            bad += inner
        return p, bad
    if cls == 8:  # enumeration: base type, names, values
        p, bad = _bad_vlen_types(buf, p, depth + 1)
        for _ in range(bits & 0xFFFF):
            p = _name_end(buf, p, padded=version < 3)
        return p + (bits & 0xFFFF) * size, bad
    raise _Stop


def check_vlen_type_fields(path: str | Path, what: str, obj: Any) -> None:
    """Refuse the h5py dataset ``obj`` (named ``what``) when its datatype holds a variable-length
    type that is neither a sequence nor a string; raises :class:`FastMRIFormatError`."""
    import h5py

    addr = h5py.h5o.get_info(obj.id).addr
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            off, length = hdf5_sizes(buf)
            for kind, start, _ in header_messages(buf, addr, off, length):
                if kind != _DATATYPE:
                    continue
                _, bad = _bad_vlen_types(buf, start)
                if bad:
                    raise FastMRIFormatError(
                        path,
                        f"{what}: corrupt datatype: a variable-length type field reads "
                        f"{bad[0]} (0 is a sequence, 1 a string)",
                    )
                return
        except (IndexError, _Stop):
            return  # a header or type that ends early or that this parser does not follow
        finally:
            buf.release()
