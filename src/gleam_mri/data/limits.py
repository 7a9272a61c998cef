"""The memory bound of the readers: arrays whose size a file declares are checked before allocation.

A file from outside (an HDF5 dataset shape, an ISMRMRD header's matrix size and encoding limits,
a twix protocol's line count, a BART ``.hdr``) may claim an array of any size; a reader that
allocated what it claims could be made to ask for terabytes by a file of a few bytes. Every reader
that allocates from declared sizes calls :func:`check_array_size` first, which raises
:class:`~gleam_mri.data.errors.FastMRIFormatError` naming the file, the array, its claimed shape
and byte count, and the bound.

The bound is ``GLEAM_MAX_ARRAY_BYTES`` (environment variable, bytes, read on each check): default
:data:`DEFAULT_MAX_ARRAY_BYTES` = 16 GiB, per array. Raise it for larger volumes (e.g.
``GLEAM_MAX_ARRAY_BYTES=68719476736`` for 64 GiB); the fuzz harness lowers it to 256 MiB.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.hdf5_datatypes import check_vlen_type_fields
from gleam_mri.data.hdf5_format import hdf5_sizes, vlen_members

ENV_VAR = "GLEAM_MAX_ARRAY_BYTES"
DEFAULT_MAX_ARRAY_BYTES = 16 * 2**30  # 16 GiB: far above one real volume, far below a bogus one


def max_array_bytes() -> int:
    """The bound in bytes: ``$GLEAM_MAX_ARRAY_BYTES`` if set (a positive integer), else 16 GiB.

    Raises ``ValueError`` naming the variable when it is set to anything else.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_MAX_ARRAY_BYTES
    try:
        bound = int(value)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a number of bytes, got {value!r}") from None
    if bound < 1:
        raise ValueError(f"{ENV_VAR} must be positive, got {bound}")
    return bound


def check_array_size(
    path: str | Path | None, what: str, shape: Iterable[int], itemsize: int
) -> int:
    """Refuse an array a file claims before it is allocated; returns its size in bytes.

    ``shape`` is the claimed shape (Python ints: the product is exact, never overflows) and
    ``itemsize`` the bytes per element of the largest array the reader makes of it. Raises
    :class:`FastMRIFormatError` for ``path`` when an axis is negative or the size exceeds
    :func:`max_array_bytes`.
    """
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise FastMRIFormatError(path, f"{what} claims a negative size: shape {dims}")
    nbytes = math.prod(dims) * int(itemsize)
    bound = max_array_bytes()
    if nbytes > bound:
        raise FastMRIFormatError(
            path,
            f"{what} claims shape {dims} = {nbytes} bytes, above the limit of {bound} bytes "
            f"({ENV_VAR})",
        )
    return nbytes


# ------------------------------------------------------------- HDF5 global heaps (a libhdf5 hang)
#
# Variable-length data (strings such as the ``gleam_kind`` attr, ISMRMRD's XML and samples) live in
# HDF5 "global heap collections" (signature ``GCOL``). libhdf5 (up to 2.0 at least) walks the
# objects of a collection with ``p = begin + need`` where ``need`` is the size the file states;
# object 0 (free space) of size 0 gives ``need == 0`` and the walk never ends, inside the C library
# with the GIL held. The collections are checked here, in Python, before any variable-length value
# is read; a file is checked once per process (keyed by inode, size and mtime).

_checked_heaps: dict[tuple[int, int, int, int], None] = {}
_MIN_SKIP = 2**20  # raw-data extents at least this large are not scanned


def _length_size(buf: memoryview) -> int:
    return hdf5_sizes(buf)[1]


def _heap_loop_at(buf: memoryview, start: int, length_size: int) -> bool:
    """Whether libhdf5's walk of the collection at ``start`` would never end (see above)."""
    header = 8 + length_size  # "GCOL", version, 3 reserved, collection size
    if start + header > len(buf) or buf[start + 4] != 1:
        return False  # libhdf5 refuses a truncated collection or another version
    end = start + int.from_bytes(buf[start + 8 : start + header], "little")
    if end > len(buf):
        return False  # libhdf5 refuses to read past the end of the file
    p = start + header
    while p < end:
        if p + header > end:
            return False  # trailing bytes too short for an object: free space
        index = int.from_bytes(buf[p : p + 2], "little")
        size = int.from_bytes(buf[p + 8 : p + header], "little")
        # size_t arithmetic, as in libhdf5: a size near 2**64 wraps round to a small ``need``
        need = (header + (size + 7) % 2**64 // 8 * 8) % 2**64 if index > 0 else size
        if need == 0:
            return True
        if p + need > end:
            return False  # libhdf5 reports "ran off end of input buffer"
        p += need
    return False


def raw_extents(datasets: Iterable[Any]) -> list[tuple[int, int]]:
    """``(offset, size)`` of the raw data of h5py datasets (contiguous or chunked; compact and
    unallocated storage has none), for :func:`check_hdf5_heaps` to skip."""
    extents: list[tuple[int, int]] = []
    for ds in datasets:
        dsid = ds.id
        offset = dsid.get_offset()
        if offset is not None:
            extents.append((offset, dsid.get_storage_size()))
        elif ds.chunks is not None and dsid.get_storage_size() > 0:
            dsid.chunk_iter(lambda info: extents.append((info.byte_offset, info.size)))
    return extents


def _heap_objects(buf: memoryview, start: int, length_size: int) -> dict[int, int]:
    """``{object index: size}`` of the collection at ``start`` (empty if it is not a valid one)."""
    header = 8 + length_size
    if start < 0 or start + header > len(buf) or bytes(buf[start : start + 4]) != b"GCOL":
        return {}
    end = start + int.from_bytes(buf[start + 8 : start + header], "little")
    p, objects = start + header, {}
    while p + header <= min(end, len(buf)):
        index = int.from_bytes(buf[p : p + 2], "little")
        size = int.from_bytes(buf[p + 8 : p + header], "little")
        if index == 0:
            break  # free space: the rest of the collection
        objects[index] = size
        p += header + (size + 7) // 8 * 8
    return objects


def check_hdf5_heaps(path: str | Path, raw_extents: Iterable[tuple[int | None, int]] = ()) -> None:
    """Refuse an HDF5 file whose global heap would make libhdf5 loop forever (see above).

    Call before reading variable-length values. ``raw_extents``: ``(offset, size)`` of the raw data
    of the large datasets (:func:`raw_extents`); those of 1 MiB or more are skipped, so that large
    files cost a scan of their metadata only (a heap that a crafted file places inside such an
    extent is not seen: a known gap).
    Raises :class:`FastMRIFormatError` naming the file and the byte offset of the bad collection.
    """
    import mmap

    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _checked_heaps or st.st_size == 0:
        return
    # only large extents are skipped: small ones cost nothing to scan, and a crafted file may
    # declare raw data over its own heaps (the fuzzer found one)
    skip = sorted(
        (int(o), int(n))
        for o, n in raw_extents
        if o is not None and n >= _MIN_SKIP and o + n <= st.st_size  # not past the end: bogus
    )
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            length_size = _length_size(buf)
            regions, pos = [], 0
            for offset, size in skip:
                if offset > pos:
                    regions.append((pos, offset))
                pos = max(pos, offset + size)
            regions.append((pos, len(buf)))
            for lo, hi in regions:
                at = mm.find(b"GCOL", lo, hi)
                while at != -1:
                    if _heap_loop_at(buf, at, length_size):
                        raise FastMRIFormatError(
                            path,
                            f"corrupt HDF5 global heap at byte {at}: an object whose size leaves "
                            "libhdf5's walk in place (0, or wrapping round to 0); it would read "
                            "forever",
                        )
                    at = mm.find(b"GCOL", at + 4, hi)
        finally:
            buf.release()
    if len(_checked_heaps) > 4096:
        _checked_heaps.clear()
    _checked_heaps[key] = None


# ------------------------------------------------------- HDF5 variable-length data (claimed sizes)
#
# A variable-length value is stored as a descriptor in the dataset's raw data (sequence length,
# 4 bytes; heap address; object index) and its data in a global heap; libhdf5 allocates what the
# descriptor claims before it reads the heap. The descriptors are read here, as raw bytes, first.


def check_vlen_sizes(path: str | Path, what: str, ds: Any) -> int:
    """Refuse an h5py dataset whose variable-length values claim more than the file could hold.

    Reads the descriptors of ``ds`` (contiguous or unfiltered chunked storage) from the file and
    sums the sizes they claim; raises :class:`FastMRIFormatError` when the sum exceeds the file's
    size (the values live uncompressed in the same file) or :func:`max_array_bytes`. Returns the
    sum in bytes (0 when ``ds`` has no variable-length parts or its storage is filtered, in which
    case nothing is checked). Also raises when a value claims fewer bytes than its heap object
    holds: libhdf5 would copy the object past the end of the buffer it sized from the claim.
    Reads the raw data and the heaps' object tables, never a value.
    """
    import mmap

    import numpy as np

    ftype = ds.id.get_type()
    members = vlen_members(ftype)
    if members:
        check_vlen_type_fields(path, what, ds)
    if not members or ds.id.get_create_plist().get_nfilters() > 0:
        return 0
    record = ftype.get_size()
    n_records = math.prod(ds.shape)
    offset = ds.id.get_offset()
    if offset is not None:
        extents = [(offset, ds.id.get_storage_size())]
    elif ds.chunks is not None:
        chunks: list[tuple[tuple[int, ...], int, int]] = []
        ds.id.chunk_iter(lambda c: chunks.append((c.chunk_offset, c.byte_offset, c.size)))
        extents = [(o, n) for _, o, n in sorted(chunks)]
        _check_chunk_index(path, what, chunks, math.prod(ds.chunks) * record)
    else:
        return 0  # compact storage: the descriptors sit in the object header (a few bytes)
    file_size = os.stat(path).st_size
    if any(o < 0 or o + n > file_size for o, n in extents):
        raise FastMRIFormatError(path, f"{what}: raw data lies beyond the end of the file")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        raw = b"".join(mm[o : o + n] for o, n in extents)
        usable = min(len(raw) // record, n_records) * record
        total = 0
        descriptors = []
        for at, elem in members:
            if at + 16 > record:  # not a 4 + 8 + 4 byte descriptor (4-byte offsets)
                view = np.dtype(
                    {"names": ["n"], "formats": ["<u4"], "offsets": [at], "itemsize": record}
                )
                total += (
                    int(np.frombuffer(raw[:usable], dtype=view)["n"].sum(dtype=np.uint64)) * elem
                )
                continue
            view = np.dtype({
                "names": ["n", "addr", "index"], "formats": ["<u4", "<u8", "<u4"],
                "offsets": [at, at + 4, at + 12], "itemsize": record,
            })  # fmt: skip
            table = np.frombuffer(raw[:usable], dtype=view)
            total += int(table["n"].sum(dtype=np.uint64)) * elem
            descriptors.append((table[table["n"] > 0], elem))
        if total > file_size:
            raise FastMRIFormatError(
                path,
                f"{what}: variable-length values claim {total} bytes, more than the whole file "
                f"({file_size} bytes)",
            )
        check_array_size(path, f"{what} (variable-length values)", (total,), 1)
        # libhdf5 copies a heap object whole into a buffer sized from the descriptor's length
        # (and compares the sizes after the copy): a shorter claim overruns that buffer
        buf = memoryview(mm)
        try:
            offset_size, length_size = hdf5_sizes(buf)
            collections: dict[int, dict[int, int]] = {}
            for table, elem in descriptors if offset_size == 8 else ():
                for n, addr, index in zip(
                    table["n"].tolist(), table["addr"].tolist(), table["index"].tolist(),
                    strict=True,
                ):  # fmt: skip
                    if addr not in collections:
                        collections[addr] = _heap_objects(buf, addr, length_size)
                    size = collections[addr].get(index)
                    if size is not None and size != n * elem:
                        raise FastMRIFormatError(
                            path,
                            f"{what}: a variable-length value claims {n * elem} bytes but its "
                            f"heap object at byte {addr} holds {size}",
                        )
        finally:
            buf.release()
    return total


def _check_chunk_index(
    path: str | Path, what: str, chunks: list[tuple[tuple[int, ...], int, int]], nbytes: int
) -> None:
    """Refuse an unfiltered chunk index that lists a chunk twice or a chunk not stored whole
    (``nbytes`` each). libhdf5 reads variable-length descriptors from such an index that are in
    no record of the file: on a fuzzed table whose chunk (0,) was listed twice, once in 0 bytes,
    it allocated between 0.5 and 12.7 GB, a different amount on each run of the same file."""
    seen: set[tuple[int, ...]] = set()
    for coords, offset, size in chunks:
        if size != nbytes:
            raise FastMRIFormatError(
                path,
                f"{what}: corrupt chunk index: the chunk at {coords} is stored in {size} bytes "
                f"at byte {offset}, not {nbytes}",
            )
        if coords in seen:
            raise FastMRIFormatError(
                path, f"{what}: corrupt chunk index: the chunk at {coords} is listed twice"
            )
        seen.add(coords)


def _overlap(dtype: Any) -> str | None:
    """The first pair of fields of a structured dtype that overlap (or overrun it), if any."""
    if dtype.fields is None:
        return None
    spans = sorted((f[1], f[1] + f[0].itemsize, name) for name, f in dtype.fields.items())
    for (_, end, name), (start, _, following) in itertools.pairwise(spans):
        if end > start:
            return f"{name!r} overlaps {following!r}"
    if spans and spans[-1][1] > dtype.itemsize:
        return f"{spans[-1][2]!r} runs past the end of the record"
    for f in dtype.fields.values():
        inner = _overlap(f[0].base)
        if inner is not None:
            return inner
    return None


def _unnamed(dtype: Any) -> str | None:
    """A member of a structured dtype (at any depth) whose name is empty, if any: h5py cannot
    build the memory type of a read from it (found by fuzzing)."""
    for name, field in (dtype.fields or {}).items():
        inner = "a member with an empty name" if name == "" else _unnamed(field[0].base)
        if inner is not None:
            return inner
    return None


def check_hdf5_dtype(path: str | Path, what: str, dtype: Any) -> None:
    """Refuse a dataset whose datatype h5py maps to a structured numpy dtype with overlapping
    fields (a member whose HDF5 type, e.g. a float of odd precision, needs a wider numpy type than
    the file gives it): converting into that layout corrupts memory in libhdf5. Members with an
    empty name are refused too (h5py cannot read them)."""
    problem = _overlap(dtype) or _unnamed(dtype)
    if problem is not None:
        raise FastMRIFormatError(path, f"{what}: unsupported HDF5 compound datatype ({problem})")


MAX_CHUNKS_PER_READ = 2**18


def check_chunk_count(
    path: str | Path, what: str, shape: Iterable[int], chunks: Iterable[int] | None
) -> int:
    """Refuse reading a region of a chunked dataset that spans more than
    :data:`MAX_CHUNKS_PER_READ` chunks: libhdf5's time and memory grow with the number of chunks
    a read touches (a terabyte dataset in 1-element chunks makes even a small read take minutes
    and gigabytes). Returns the number of chunks (1 for contiguous storage)."""
    if chunks is None:
        return 1
    count = math.prod(-(-int(n) // max(int(c), 1)) for n, c in zip(shape, chunks, strict=True))
    if count > MAX_CHUNKS_PER_READ:
        raise FastMRIFormatError(
            path,
            f"{what}: reading shape {tuple(shape)} touches {count} chunks of shape "
            f"{tuple(chunks)}, more than {MAX_CHUNKS_PER_READ}; re-chunk the file (h5repack)",
        )
    return count
