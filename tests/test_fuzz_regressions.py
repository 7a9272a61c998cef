"""Regressions of the failures the fuzz targets found (issue 14; ``fuzz/README.md``).

Each test crafts the kind of input that made a reader fail (an exception other than
:class:`FastMRIFormatError`, a hang or memory far beyond the bound) and checks that it is now
refused with a ``FastMRIFormatError`` naming the file and the problem. Inputs that hung the reader
run in a forked child with a time limit, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from fuzz_inputs import CORPUS, fastmri_file, refused_within
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri, write_fastmri
from gleam_mri.data.ismrmrd_header import make_ismrmrd_header, parse_ismrmrd_header
from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw
from gleam_mri.data.limits import check_hdf5_heaps
from gleam_mri.data.raw import detect_format, read_raw

# ------------------------------------------------------------------ fastmri: libhdf5 heap loop


def _zero_size_heap_object(path: Path) -> int:
    """Turn the first object of the file's first global heap into free space of size 0."""
    data = bytearray(path.read_bytes())
    at = data.index(b"GCOL")
    first = at + 16  # "GCOL", version, 3 reserved, 8-byte collection size
    data[first : first + 16] = bytes(16)  # index 0, no refs, reserved, size 0
    path.write_bytes(bytes(data))
    return at


def test_heap_object_of_size_zero_is_refused_not_looped(tmp_path):
    """Found by ``fastmri``: reading the vlen ``gleam_kind`` attr looped forever inside libhdf5."""
    path = fastmri_file(tmp_path / "heap.h5")
    at = _zero_size_heap_object(path)
    with pytest.raises(
        FastMRIFormatError, match=rf"heap\.h5: corrupt HDF5 global heap at byte {at}"
    ):
        check_hdf5_heaps(path)
    refused_within(20, lambda: inspect_fastmri(path), "corrupt HDF5 global heap")
    refused_within(20, lambda: read_fastmri(path), "corrupt HDF5 global heap")


def test_heap_check_passes_good_files_and_skips_raw_data(tmp_path):
    path = fastmri_file(tmp_path / "good.h5")
    check_hdf5_heaps(path)
    assert inspect_fastmri(path).attrs["acquisition"] == "AXT1"
    # a "GCOL" inside a large raw-data extent that is skipped is not mistaken for a heap
    big = write_fastmri(tmp_path / "big.h5", np.ones((1, 2, 256, 256), np.complex64))  # 1 MiB
    data = bytearray(big.read_bytes())
    with h5py.File(big, "r") as hf:
        offset, size = hf["kspace"].id.get_offset(), hf["kspace"].id.get_storage_size()
    data[offset : offset + 32] = b"GCOL\x01\0\0\0" + (64).to_bytes(8, "little") + bytes(16)
    big.write_bytes(bytes(data))
    check_hdf5_heaps(big, [(offset, size)])
    copy = tmp_path / "copy.h5"  # (a file is checked once per process: another inode)
    shutil.copy(big, copy)
    with pytest.raises(FastMRIFormatError, match="corrupt HDF5 global heap"):
        check_hdf5_heaps(copy)  # the same bytes, not skipped: the pattern that loops
    small = tmp_path / "small.h5"  # extents under 1 MiB are always scanned
    shutil.copy(big, small)
    with pytest.raises(FastMRIFormatError, match="corrupt HDF5 global heap"):
        check_hdf5_heaps(small, [(offset, 1024)])


# ------------------------------------------------------------------ ismrmrd


def _ismrmrd_seed(tmp_path: Path, name: str = "raw.h5") -> Path:
    path = tmp_path / name
    shutil.copy(CORPUS / "ismrmrd" / "seed-2d", path)
    return path


def _first_data_descriptor(path: Path) -> int:
    """Byte offset in the file of the first acquisition's variable-length ``data`` descriptor."""
    with h5py.File(path, "r") as hf:
        ds = hf["dataset/data"]
        ftype = ds.id.get_type()
        member = [ftype.get_member_name(i) for i in range(ftype.get_nmembers())].index(b"data")
        chunks = []
        ds.id.chunk_iter(lambda c: chunks.append(c.byte_offset))
    return chunks[0] + ftype.get_member_offset(member)


def test_vlen_length_beyond_the_file_is_refused_before_allocation(tmp_path):
    """Found by ``ismrmrd`` (out of memory): an acquisition's variable-length ``data`` claimed
    gigabytes, which libhdf5 allocated before reading."""
    path = _ismrmrd_seed(tmp_path)
    at = _first_data_descriptor(path)
    data = bytearray(path.read_bytes())
    data[at : at + 4] = struct.pack("<I", 2**31 - 1)
    path.write_bytes(bytes(data))
    with pytest.raises(
        FastMRIFormatError,
        match=r"raw\.h5: /dataset/data: variable-length values claim \d+ bytes, more than",
    ):
        read_ismrmrd_raw(path)


def test_acquisition_header_without_counters_is_refused(tmp_path):
    """Found by ``ismrmrd``: a table whose ``head`` lacked ``idx`` fields raised ValueError."""
    path = tmp_path / "nohead.h5"
    vlen = h5py.vlen_dtype(np.dtype("float32"))
    head = np.dtype([("flags", "<u8"), ("idx", [("kspace_encode_step_1", "<u2")])])
    table = np.zeros(2, np.dtype([("head", head), ("data", vlen)]))
    for row in table:
        row["data"] = np.zeros(4, np.float32)
    with h5py.File(path, "w") as hf:
        hf["dataset/xml"] = make_ismrmrd_header((2, 2, 1)).decode()
        hf.create_dataset("dataset/data", data=table)
    with pytest.raises(FastMRIFormatError, match=r"nohead\.h5: .*lacks integer fields"):
        read_ismrmrd_raw(path)


def test_damaged_chunk_index_is_a_format_error(tmp_path):
    """Found by ``ismrmrd``: h5py's RuntimeError / OSError on damaged metadata escaped."""
    path = _ismrmrd_seed(tmp_path, "tree.h5")
    data = bytearray(path.read_bytes())
    for at in [i for i in range(len(data) - 4) if data[i : i + 4] == b"TREE"]:
        data[at : at + 4] = b"TRXX"
    path.write_bytes(bytes(data))
    with pytest.raises(FastMRIFormatError, match=r"tree\.h5: "):
        read_ismrmrd_raw(path)


# ------------------------------------------------------------------ ismrmrd_header


@pytest.mark.parametrize("encoding", ["utf-4", "rot13", "idna"])
def test_header_declaring_an_unusable_encoding(encoding):
    """Found by ``ismrmrd_header``: ``encoding="utf-4"`` raised LookupError from the parser."""
    xml = f'<?xml version="1.0" encoding="{encoding}"?><ismrmrdHeader/>'.encode()
    with pytest.raises(FastMRIFormatError, match=r"header\.xml: .*encoding"):
        parse_ismrmrd_header(xml, source="header.xml")


# ------------------------------------------------------------------ convert


def test_hdf5_that_cannot_be_opened(tmp_path):
    """Found by ``convert``: h5py's OSError ("unknown symbol table entry cache type") escaped."""
    path = fastmri_file(tmp_path / "good.h5")
    data = bytearray(path.read_bytes())
    assert data[:8] == b"\x89HDF\r\n\x1a\n" and data[8] == 0  # superblock version 0
    data[72:76] = struct.pack("<I", 7)  # the root group entry's cache type
    bad = tmp_path / "upload"
    bad.write_bytes(bytes(data))
    with pytest.raises(FastMRIFormatError, match=r"upload: an HDF5 file that cannot be opened"):
        read_raw(bad)


def test_hdf5_with_a_damaged_root_group(tmp_path):
    """Found by ``convert``: RuntimeError ("bad local heap signature") on ``"dataset" in hf``."""
    path = fastmri_file(tmp_path / "good.h5")
    data = path.read_bytes()
    assert data.count(b"HEAP") >= 1
    bad = tmp_path / "upload"
    bad.write_bytes(data.replace(b"HEAP", b"HEAX"))
    with pytest.raises(FastMRIFormatError, match=r"upload: "):
        detect_format(bad)


# ------------------------------------------------------------------ datatypes numpy cannot map


@pytest.mark.parametrize(
    ("reader", "saved", "match"),
    [
        (inspect_fastmri, "fastmri/regress-odd-float-dtype", "'kspace' has an unsupported HDF5"),
        (inspect_fastmri, "fastmri/regress-attr-odd-float", "attr 'max' has an unsupported HDF5"),
        (read_ismrmrd_raw, "ismrmrd/regress-non-utf8-field-name", "/dataset/data: unsupported"),
        (read_raw, "convert/regress-unsupported-dtype", "/dataset/data: unsupported HDF5"),
    ],
)
def test_unsupported_hdf5_datatype(tmp_path, reader, saved, match):
    """Found by ``fastmri``, ``ismrmrd``, ``convert`` (saved inputs): h5py's ValueError
    ("Insufficient precision ...") or UnicodeDecodeError (a member name) mapping a datatype."""
    path = tmp_path / "input.h5"
    shutil.copy(CORPUS / saved, path)
    with pytest.raises(FastMRIFormatError, match=rf"input\.h5: .*{match}"):
        reader(path)


def test_gleam_kind_that_is_not_a_string(tmp_path):
    """Found by ``fastmri_struct``: an array ``gleam_kind`` attr raised numpy's ValueError."""
    path = fastmri_file(tmp_path / "kind.h5")
    with h5py.File(path, "a") as hf:
        hf.attrs["gleam_kind"] = np.arange(2)
    with pytest.raises(FastMRIFormatError, match=r"kind\.h5: unknown kind array"):
        inspect_fastmri(path)


def test_compound_whose_fields_overlap_is_refused(tmp_path):
    """Found by ``ismrmrd`` (a crash, "double free or corruption"): a float member of odd
    precision that h5py maps to float64 in a 4-byte slot; reading into those overlapping fields
    corrupted memory inside libhdf5. Run in a child: a regression crashes that, not the suite."""
    path = tmp_path / "overlap.h5"
    shutil.copy(CORPUS / "ismrmrd" / "regress-overlapping-fields", path)
    refused_within(30, lambda: read_ismrmrd_raw(path), "'sample_time_us' overlaps 'position'")


def test_vlen_length_shorter_than_its_heap_object_is_refused(tmp_path):
    """libhdf5 copies a heap object whole into a buffer sized from the descriptor's length."""
    path = _ismrmrd_seed(tmp_path, "short.h5")
    at = _first_data_descriptor(path)
    data = bytearray(path.read_bytes())
    claimed = struct.unpack_from("<I", data, at)[0]
    assert claimed > 1
    data[at : at + 4] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    refused_within(30, lambda: read_ismrmrd_raw(path), "claims 4 bytes but its heap object at byte")


def test_dataset_names_that_are_not_utf8(tmp_path):
    """Found by ``fastmri`` (saved input): listing names mixed bytes and str, and sorting them
    for the "no 'kspace' dataset" message raised TypeError."""
    path = tmp_path / "names.h5"
    shutil.copy(CORPUS / "fastmri" / "regress-non-utf8-names", path)
    with pytest.raises(FastMRIFormatError, match=r"names\.h5: no 'kspace' dataset \(found "):
        inspect_fastmri(path)


def test_read_touching_too_many_chunks_is_refused(tmp_path):
    """Found by ``fastmri_struct`` (out of memory): a small read of a dataset stored in
    1-element chunks made libhdf5 spend minutes and gigabytes on the chunk index."""
    path = fastmri_file(tmp_path / "chunks.h5")
    with h5py.File(path, "a") as hf:
        del hf["kspace"]
        hf.create_dataset("kspace", shape=(1, 2, 512, 512), dtype=np.complex64, chunks=(1, 1, 1, 1))
    with pytest.raises(
        FastMRIFormatError, match=r"chunks\.h5: kspace: reading shape .* touches 524288 chunks"
    ):
        read_fastmri(path)


def test_heap_object_size_that_wraps_round_is_refused_not_looped(tmp_path):
    """Found by ``convert`` (a timeout, saved input): a heap object of size near 2**64, whose
    padded size wraps round to 0 in libhdf5's size_t arithmetic, hung reading the XML header."""
    path = tmp_path / "upload"
    shutil.copy(CORPUS / "convert" / "regress-heap-size-wraps", path)
    refused_within(20, lambda: read_raw(path), "corrupt HDF5 global heap at byte 2448")


def test_xml_that_is_not_a_string_is_refused(tmp_path):
    """Found by ``ismrmrd`` (a crash in libhdf5's H5T__vlen_disk_setnull, saved input): the XML
    header stored as a variable-length sequence of bytes instead of a string."""
    path = tmp_path / "xml.h5"
    shutil.copy(CORPUS / "ismrmrd" / "regress-xml-vlen-bytes", path)
    refused_within(30, lambda: read_ismrmrd_raw(path), "/dataset/xml is not a string")


def test_header_array_of_several_strings(tmp_path):
    """Found by ``fastmri`` and ``fastmri_struct``: an ``ismrmrd_header`` dataset of 2 strings
    raised numpy's ValueError from ``.item()``."""
    path = fastmri_file(tmp_path / "hdr.h5")
    xml = make_ismrmrd_header((4, 4, 1))
    with h5py.File(path, "a") as hf:
        del hf["ismrmrd_header"]
        hf["ismrmrd_header"] = np.array([xml, xml])
    with pytest.raises(FastMRIFormatError, match=r"hdr\.h5: ISMRMRD header must be one string"):
        inspect_fastmri(path)


def test_heap_hidden_under_a_bogus_raw_data_extent(tmp_path):
    """Found by ``fastmri`` (a timeout, saved input): ``mask`` declared 13 MB of raw data in a
    10 kB file, over the heap; the scan skipped that extent and missed the looping heap."""
    path = tmp_path / "hidden.h5"
    shutil.copy(CORPUS / "fastmri" / "regress-heap-inside-raw-data", path)
    refused_within(20, lambda: inspect_fastmri(path), "corrupt HDF5 global heap at byte 6144")


def test_header_that_is_not_a_string_is_refused_before_reading(tmp_path):
    """Found by ``fastmri_struct`` (out of memory): an ``ismrmrd_header`` of 10**6 complex
    numbers in 1-element chunks took gigabytes inside libhdf5 to read."""
    path = fastmri_file(tmp_path / "hdr.h5")
    with h5py.File(path, "a") as hf:
        del hf["ismrmrd_header"]
        hf.create_dataset("ismrmrd_header", shape=(2**20,), dtype=np.complex64, chunks=(1,))
    with pytest.raises(FastMRIFormatError, match=r"hdr\.h5: ismrmrd_header is not a string"):
        inspect_fastmri(path)


def test_compound_member_without_a_name_is_refused(tmp_path):
    """An ISMRMRD acquisition table whose compound type has a member named '' (found by fuzzing
    convert): h5py raised ValueError building the read's memory type."""
    path = tmp_path / "unnamed.h5"
    shutil.copy(CORPUS / "convert" / "regress-unnamed-member", path)
    with pytest.raises(FastMRIFormatError, match=r"unnamed\.h5.*a member with an empty name"):
        read_raw(path)


def test_attribute_name_that_is_not_utf8_reads(tmp_path):
    """An attribute whose name is not UTF-8 (h5py gives it as bytes) broke the variable-length
    attribute check with an AttributeError (found by fuzzing); the file reads."""
    path = tmp_path / "names.h5"
    shutil.copy(CORPUS / "fastmri" / "regress-bytes-attr-name", path)
    info = inspect_fastmri(path)
    assert info.attrs["gleam_kind"] == "2d" and any(isinstance(k, bytes) for k in info.attrs)


def test_mask_that_is_not_real_is_refused(tmp_path):
    """Found by ``fastmri_struct``: a mask that is not a real array made the conversion to
    float32 raise ValueError ("setting an array element with a sequence"; TypeError for this
    compound one)."""
    path = fastmri_file(tmp_path / "mask.h5")
    with h5py.File(path, "a") as hf:
        hf["mask"] = np.zeros(4, dtype=[("a", "<f4"), ("b", "<f4")])
    with pytest.raises(FastMRIFormatError, match=r"mask\.h5: mask must be real"):
        read_fastmri(path)
