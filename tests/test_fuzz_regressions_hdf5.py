"""Regressions of the fuzz failures that made libhdf5 allocate gigabytes or crash (issue 14;
``fuzz/README.md``).

As in ``test_fuzz_regressions.py``: each test crafts the kind of input that made a reader fail and
checks that it is now refused with a ``FastMRIFormatError`` naming the file and the problem;
inputs that hung or crashed the reader run in a forked child (:func:`refused_within`).
"""

from __future__ import annotations

import shutil
import struct

import h5py
import numpy as np
import pytest

from fuzz_inputs import CORPUS, fastmri_file, refused_within
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri
from gleam_mri.data.raw import read_raw


@pytest.mark.parametrize("libver", ["earliest", "latest"])  # object header versions 1 and 2
def test_attribute_claiming_gigabytes_is_refused_before_allocation(tmp_path, libver):
    """A str attribute whose descriptor claims 2 GB: libhdf5 allocated the claim before finding
    the heap address bad (2.3 GB peak, found by fuzzing); now refused from the object header.
    Version 2 headers carry a checksum (a patched claim is refused by libhdf5 unless the checksum
    is recomputed), so there the walk is checked to read the true claim."""
    from gleam_mri.data.hdf5_attributes import _ATTRIBUTE, _attribute, header_messages

    path = tmp_path / "attr.h5"
    value = "an acquisition name"
    with h5py.File(path, "w", libver=libver) as hf:
        hf.create_dataset("kspace", data=np.zeros((1, 2, 8, 8), np.complex64))
        hf.attrs["acquisition"] = value
        hf.attrs["max"] = 1.0
        addr = h5py.h5o.get_info(hf.id).addr
    assert inspect_fastmri(path).attrs["acquisition"] == value  # a sound file reads as before
    data = bytearray(path.read_bytes())
    found = {}
    for kind, start, size in header_messages(memoryview(bytes(data)), addr, 8, 8):
        if kind == _ATTRIBUTE:
            name, at = _attribute(memoryview(bytes(data)), start, size)
            found[name] = struct.unpack_from("<I", data, at)[0] if name == b"acquisition" else 0
    assert found == {b"acquisition": len(value), b"max": 0}
    if libver == "latest":
        return
    at = data.find(struct.pack("<IQ", len(value), data.find(b"GCOL")))
    data[at : at + 4] = struct.pack("<I", 2**31)
    path.write_bytes(bytes(data))
    for reader in (inspect_fastmri, read_fastmri):
        with pytest.raises(
            FastMRIFormatError, match=r"attr\.h5.*'acquisition' claims .*2147483648"
        ):
            reader(path)


def test_chunk_listed_twice_is_refused_before_libhdf5_reads_it(tmp_path):
    # the one out-of-memory finding: an acquisition table whose chunk index lists chunk (0,) twice
    # (once stored in 0 bytes at byte 0); libhdf5 took bytes it never read for variable-length
    # descriptors and allocated 0.5-12.7 GB, a different amount on each run
    path = tmp_path / "upload"
    shutil.copy(CORPUS / "convert" / "regress-chunk-listed-twice", path)
    refused_within(30, lambda: read_raw(path), "corrupt chunk index: the chunk at (0,) is listed")


def test_chunk_stored_short_is_refused():
    from gleam_mri.data.limits import _check_chunk_index

    _check_chunk_index("f.h5", "/d", [((0,), 800, 372), ((1,), 1172, 372)], 372)
    with pytest.raises(FastMRIFormatError, match=r"f\.h5: /d: corrupt chunk index: .* 0 bytes"):
        _check_chunk_index("f.h5", "/d", [((0,), 800, 372), ((1,), 0, 0)], 372)


def test_string_attribute_whose_type_field_is_undefined_is_refused(tmp_path):
    """A fuzzed real file whose string attribute's variable-length type field read 6 (0 is a
    sequence, 1 a string): h5py saw a sequence of bytes and libhdf5's read crashed (SIGSEGV)."""
    path = fastmri_file(tmp_path / "vlen-type.h5")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x19\x01\x01\x00\x10\x00\x00\x00", data.index(b"acquisition"))
    data[at + 1] = 0x06  # class bit field: type 6, undefined
    path.write_bytes(bytes(data))
    refused_within(30, lambda: inspect_fastmri(path), "attribute 'acquisition' holds variable")


@pytest.mark.parametrize("member", [0, 1])
def test_sample_sequence_whose_type_field_is_undefined_is_refused(tmp_path, member):
    """The same damage in an ISMRMRD table's traj or data member (found by hand after the
    attribute): h5py saw float32 sequences and libhdf5's read crashed; now refused from the
    datatype message in the object header."""
    path = tmp_path / "table.h5"
    data = bytearray((CORPUS / "ismrmrd" / "seed-2d").read_bytes())
    vlen_float = b"\x19\x00\x00\x00\x10\x00\x00\x00"  # version 1, variable-length, sequence
    at = data.index(vlen_float)
    if member:
        at = data.index(vlen_float, at + 1)
    data[at + 1] = 0x06
    path.write_bytes(bytes(data))
    refused_within(30, lambda: read_raw(path), "a variable-length type field reads 6")
