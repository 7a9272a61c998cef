"""Regressions of the fuzz failures in the Siemens twix reader (issue 14; ``fuzz/README.md``).

As in ``test_fuzz_regressions.py``: each test crafts the kind of input that made a reader fail and
checks that it is now refused with a ``FastMRIFormatError`` naming the file and the problem;
inputs that hung or crashed the reader run in a forked child (:func:`refused_within`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from fuzz_inputs import CORPUS, refused_within
from gleam_mri.data.errors import FastMRIFormatError


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
    refused_within(30, lambda: read_twix(path), f"block at byte {block} has length 0")


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
    refused_within(30, lambda: read_twix(path), "but the file ends at")


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
