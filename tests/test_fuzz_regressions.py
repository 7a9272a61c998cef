"""Regressions of the failures the fuzz targets found (issue 14; ``fuzz/README.md``).

Each test crafts the kind of input that made a reader fail (an exception other than
:class:`FastMRIFormatError`, a hang or memory far beyond the bound) and checks that it is now
refused with a ``FastMRIFormatError`` naming the file and the problem. Inputs that hung the reader
run in a forked child with a time limit, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from gleam_mri.convert import detect_format, read_raw
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri, write_fastmri
from gleam_mri.data.ismrmrd_header import make_ismrmrd_header, parse_ismrmrd_header
from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw
from gleam_mri.data.limits import check_hdf5_heaps

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"


def _refused_within(seconds: float, call: Callable[[], object], match: str) -> None:
    """``call()`` in a forked child must raise FastMRIFormatError whose text contains ``match``
    within ``seconds`` (a hang is killed and reported as such)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what happened through the pipe, never return
        try:
            call()
            report = "accepted the input"
        except BaseException as err:
            report = f"{type(err).__name__}: {err}"
        finally:
            os.write(write_end, report.encode()[:4000])
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            with os.fdopen(read_end, "rb") as fh:
                report = fh.read().decode()
            assert report.startswith("FastMRIFormatError: ") and match in report, report
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    pytest.fail(f"still running after {seconds} s: the hang is back")


def _fastmri_file(path: Path) -> Path:
    kspace = np.ones((1, 2, 4, 4), np.complex64)
    return write_fastmri(path, kspace, attrs={"acquisition": "AXT1"})


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
    path = _fastmri_file(tmp_path / "heap.h5")
    at = _zero_size_heap_object(path)
    with pytest.raises(
        FastMRIFormatError, match=rf"heap\.h5: corrupt HDF5 global heap at byte {at}"
    ):
        check_hdf5_heaps(path)
    _refused_within(20, lambda: inspect_fastmri(path), "corrupt HDF5 global heap")
    _refused_within(20, lambda: read_fastmri(path), "corrupt HDF5 global heap")


def test_heap_check_passes_good_files_and_skips_raw_data(tmp_path):
    path = _fastmri_file(tmp_path / "good.h5")
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
    path = _fastmri_file(tmp_path / "good.h5")
    data = bytearray(path.read_bytes())
    assert data[:8] == b"\x89HDF\r\n\x1a\n" and data[8] == 0  # superblock version 0
    data[72:76] = struct.pack("<I", 7)  # the root group entry's cache type
    bad = tmp_path / "upload"
    bad.write_bytes(bytes(data))
    with pytest.raises(FastMRIFormatError, match=r"upload: an HDF5 file that cannot be opened"):
        read_raw(bad)


def test_hdf5_with_a_damaged_root_group(tmp_path):
    """Found by ``convert``: RuntimeError ("bad local heap signature") on ``"dataset" in hf``."""
    path = _fastmri_file(tmp_path / "good.h5")
    data = path.read_bytes()
    assert data.count(b"HEAP") >= 1
    bad = tmp_path / "upload"
    bad.write_bytes(data.replace(b"HEAP", b"HEAX"))
    with pytest.raises(FastMRIFormatError, match=r"upload: "):
        detect_format(bad)


# ------------------------------------------------------------------ twix


def _twix_seed(tmp_path: Path) -> tuple[Path, bytearray]:
    pytest.importorskip("twixtools")
    path = tmp_path / "meas.dat"
    return path, bytearray((CORPUS / "twix" / "seed-ve-4lines").read_bytes())


def _first_block(data: bytearray) -> int:
    """Byte offset of the first measurement data block (after the measurement header)."""
    from twixtools import hdr_def

    raid = np.frombuffer(
        bytes(data[: hdr_def.MultiRaidFileHeader.itemsize]), hdr_def.MultiRaidFileHeader
    )
    start = int(raid[0]["entry"][0]["off_"])
    return start + struct.unpack_from("<I", data, start)[0]


def test_twix_block_of_length_zero_is_refused_not_looped(tmp_path):
    """Found by ``twix`` (out of memory): twixtools looped forever on a block of DMA length 0,
    appending the same block."""
    from gleam_mri.data.twix import read_twix

    path, data = _twix_seed(tmp_path)
    block = _first_block(data)
    from twixtools import mdh_def

    mdh = mdh_def.Scan_header.from_buffer_copy(bytes(data[block : block + 192]))
    mdh_def.set_flag(mdh, "SYNCDATA", True)
    mdh.FlagsAndDMALength = 0
    data[block : block + 192] = bytes(mdh)
    path.write_bytes(bytes(data))
    _refused_within(30, lambda: read_twix(path), f"block at byte {block} has length 0")


def test_twix_measurement_far_beyond_the_file_is_refused(tmp_path):
    """A measurement claiming terabytes: twixtools would step through them 192 bytes at a time."""
    from twixtools import hdr_def

    from gleam_mri.data.twix import read_twix

    path, data = _twix_seed(tmp_path)
    data = data[: -(192 + 16)]  # without its ACQEND block, and then
    raid = np.frombuffer(
        bytes(data[: hdr_def.MultiRaidFileHeader.itemsize]), hdr_def.MultiRaidFileHeader
    ).copy()
    raid[0]["entry"][0]["len_"] = 2**40
    data[: raid.nbytes] = raid.tobytes()
    path.write_bytes(bytes(data))
    _refused_within(30, lambda: read_twix(path), "but the file ends at")


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
    path = _fastmri_file(tmp_path / "kind.h5")
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
    _refused_within(30, lambda: read_ismrmrd_raw(path), "'sample_time_us' overlaps 'position'")


def test_vlen_length_shorter_than_its_heap_object_is_refused(tmp_path):
    """libhdf5 copies a heap object whole into a buffer sized from the descriptor's length."""
    path = _ismrmrd_seed(tmp_path, "short.h5")
    at = _first_data_descriptor(path)
    data = bytearray(path.read_bytes())
    claimed = struct.unpack_from("<I", data, at)[0]
    assert claimed > 1
    data[at : at + 4] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    _refused_within(
        30, lambda: read_ismrmrd_raw(path), "claims 4 bytes but its heap object at byte"
    )


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
    path = _fastmri_file(tmp_path / "chunks.h5")
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
    _refused_within(20, lambda: read_raw(path), "corrupt HDF5 global heap at byte 2448")


def test_xml_that_is_not_a_string_is_refused(tmp_path):
    """Found by ``ismrmrd`` (a crash in libhdf5's H5T__vlen_disk_setnull, saved input): the XML
    header stored as a variable-length sequence of bytes instead of a string."""
    path = tmp_path / "xml.h5"
    shutil.copy(CORPUS / "ismrmrd" / "regress-xml-vlen-bytes", path)
    _refused_within(30, lambda: read_ismrmrd_raw(path), "/dataset/xml is not a string")


def test_header_array_of_several_strings(tmp_path):
    """Found by ``fastmri`` and ``fastmri_struct``: an ``ismrmrd_header`` dataset of 2 strings
    raised numpy's ValueError from ``.item()``."""
    path = _fastmri_file(tmp_path / "hdr.h5")
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
    _refused_within(20, lambda: inspect_fastmri(path), "corrupt HDF5 global heap at byte 6144")


def test_header_that_is_not_a_string_is_refused_before_reading(tmp_path):
    """Found by ``fastmri_struct`` (out of memory): an ``ismrmrd_header`` of 10**6 complex
    numbers in 1-element chunks took gigabytes inside libhdf5 to read."""
    path = _fastmri_file(tmp_path / "hdr.h5")
    with h5py.File(path, "a") as hf:
        del hf["ismrmrd_header"]
        hf.create_dataset("ismrmrd_header", shape=(2**20,), dtype=np.complex64, chunks=(1,))
    with pytest.raises(FastMRIFormatError, match=r"hdr\.h5: ismrmrd_header is not a string"):
        inspect_fastmri(path)


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


def test_twix_scans_without_samples_are_refused(tmp_path, monkeypatch):
    """Image scans of 0 samples (a mutated real twix file, found by fuzzing) ended in numpy's
    'Invalid number of FFT data points (0)'; now a format error."""
    from types import SimpleNamespace

    from gleam_mri.data import twix

    class Scan:
        cRep = cEco = cPar = cLin = cSlc = 0
        data = np.zeros((4, 0), np.complex64)
        mdh = SimpleNamespace(CenterCol=0, CenterLin=0)

        def is_image_scan(self) -> bool:
            return True

        def is_flag_set(self, flag: str) -> bool:
            return False

    monkeypatch.setattr(twix, "_load", lambda path: {"mdb": [Scan()], "hdr": {}})
    with pytest.raises(FastMRIFormatError, match=r"meas\.dat.*hold no samples.*\(4, 0\)"):
        twix.read_twix(tmp_path / "meas.dat")


def test_chunk_listed_twice_is_refused_before_libhdf5_reads_it(tmp_path):
    # the one out-of-memory finding: an acquisition table whose chunk index lists chunk (0,) twice
    # (once stored in 0 bytes at byte 0); libhdf5 took bytes it never read for variable-length
    # descriptors and allocated 0.5-12.7 GB, a different amount on each run
    path = tmp_path / "upload"
    shutil.copy(CORPUS / "convert" / "regress-chunk-listed-twice", path)
    _refused_within(30, lambda: read_raw(path), "corrupt chunk index: the chunk at (0,) is listed")


def test_chunk_stored_short_is_refused():
    from gleam_mri.data.limits import _check_chunk_index

    _check_chunk_index("f.h5", "/d", [((0,), 800, 372), ((1,), 1172, 372)], 372)
    with pytest.raises(FastMRIFormatError, match=r"f\.h5: /d: corrupt chunk index: .* 0 bytes"):
        _check_chunk_index("f.h5", "/d", [((0,), 800, 372), ((1,), 0, 0)], 372)


def test_string_attribute_whose_type_field_is_undefined_is_refused(tmp_path):
    """A fuzzed real file whose string attribute's variable-length type field read 6 (0 is a
    sequence, 1 a string): h5py saw a sequence of bytes and libhdf5's read crashed (SIGSEGV)."""
    path = _fastmri_file(tmp_path / "vlen-type.h5")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x19\x01\x01\x00\x10\x00\x00\x00", data.index(b"acquisition"))
    data[at + 1] = 0x06  # class bit field: type 6, undefined
    path.write_bytes(bytes(data))
    _refused_within(30, lambda: inspect_fastmri(path), "attribute 'acquisition' holds variable")


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
    _refused_within(30, lambda: read_raw(path), "a variable-length type field reads 6")


def test_mask_that_is_not_real_is_refused(tmp_path):
    """Found by ``fastmri_struct``: a mask that is not a real array made the conversion to
    float32 raise ValueError ("setting an array element with a sequence"; TypeError for this
    compound one)."""
    path = _fastmri_file(tmp_path / "mask.h5")
    with h5py.File(path, "a") as hf:
        hf["mask"] = np.zeros(4, dtype=[("a", "<f4"), ("b", "<f4")])
    with pytest.raises(FastMRIFormatError, match=r"mask\.h5: mask must be real"):
        read_fastmri(path)


@pytest.mark.filterwarnings("ignore:Quaternion is not normalized")  # twixtools, on the seed
def test_twix_protocol_number_that_is_not_one_is_refused(tmp_path):
    """Found by the bounded ``twix`` run in the suite: a damaged header gave the readout
    oversampling factor as a string, and float() raised ValueError."""
    from gleam_mri.data.twix import read_twix

    path, data = _twix_seed(tmp_path)
    at = data.index(b"<Precision> 6  2.000000")
    data[at + 3] = ord(".")  # "<Pr.cision> 6  2.000000": twixtools keeps the whole text
    path.write_bytes(bytes(data))
    with pytest.raises(FastMRIFormatError, match=r"meas\.dat: the protocol's readout_os_factor"):
        read_twix(path)
