"""The memory bound (``GLEAM_MAX_ARRAY_BYTES``, :mod:`gleam_mri.data.limits`): files that claim
huge arrays are refused before anything is allocated (issue 14)."""

from __future__ import annotations

import resource

import h5py
import numpy as np
import pytest

from gleam_mri.data.cfl import read_cfl, write_cfl
from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri, write_fastmri
from gleam_mri.data.ismrmrd_header import make_ismrmrd_header
from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw
from gleam_mri.data.limits import (
    DEFAULT_MAX_ARRAY_BYTES,
    ENV_VAR,
    check_array_size,
    max_array_bytes,
)

TERA = 10**12


@pytest.fixture
def bounded_memory():
    """Address space capped at 8 GiB more than now: an attempt to allocate a claimed terabyte
    fails loudly (MemoryError) instead of being refused, and the test fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * resource.getpagesize()
    cap = used + 8 * 2**30
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_bound_from_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert max_array_bytes() == DEFAULT_MAX_ARRAY_BYTES == 16 * 2**30
    monkeypatch.setenv(ENV_VAR, "1000")
    assert max_array_bytes() == 1000
    assert check_array_size("f.h5", "kspace", (10, 10), 8) == 800
    with pytest.raises(FastMRIFormatError, match=r"f\.h5: kspace claims shape \(10, 13\) = 1040"):
        check_array_size("f.h5", "kspace", (10, 13), 8)
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(ValueError, match=ENV_VAR):
            max_array_bytes()


def test_product_is_exact_and_negative_axes_refused():
    # 2**40 * 2**40 would wrap around in int64; Python ints do not
    with pytest.raises(FastMRIFormatError, match=r"claims shape \(1099511627776, 1099511627776\)"):
        check_array_size(None, "x", (2**40, 2**40), 8)
    with pytest.raises(FastMRIFormatError, match="negative"):
        check_array_size(None, "x", (4, -1), 8)


def test_fastmri_kspace_of_a_terabyte_is_refused(tmp_path, bounded_memory):
    path = tmp_path / "huge.h5"
    write_fastmri(path, np.ones((1, 2, 4, 4), np.complex64))
    shape = (10**4, 10, 100, 100_000)  # 10**12 complex64 elements, no storage written
    with h5py.File(path, "a") as hf:
        del hf["kspace"]
        hf.create_dataset("kspace", shape=shape, dtype=np.complex64, chunks=(1, 1, 1, 1000))
    assert inspect_fastmri(path).kspace_shape == shape  # reading the layout is fine
    with pytest.raises(
        FastMRIFormatError,
        match=rf"huge\.h5: kspace claims shape \(10000, 10, 100, 100000\) = {8 * TERA} bytes, "
        r"above the limit of \d+ bytes \(GLEAM_MAX_ARRAY_BYTES\)",
    ):
        read_fastmri(path)
    # one slice of it is still 8 * 10**8 bytes: allowed by the default bound, refused below it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(2**20))
        with pytest.raises(FastMRIFormatError, match=r"kspace claims shape \(1, 10, 100, 100000\)"):
            read_fastmri(path, 0)


def _ismrmrd(path, xml: bytes, n: int = 2, rows: int | None = None) -> None:
    vlen = h5py.vlen_dtype(np.dtype("float32"))
    counters = [
        (c, "<u2")
        for c in (
            "kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast",
            "phase", "repetition", "set", "segment",
        )
    ]  # fmt: skip
    head = np.dtype(
        [(f, "<u8" if f == "flags" else "<u2") for f in (
            "flags", "number_of_samples", "active_channels", "discard_pre", "discard_post",
            "center_sample", "encoding_space_ref",
        )] + [("idx", counters)]
    )  # fmt: skip
    acq = np.dtype([("head", head), ("traj", vlen), ("data", vlen)])
    with h5py.File(path, "w") as hf:
        hf["dataset/xml"] = xml.decode()
        if rows is not None:  # a table claiming `rows` acquisitions, storage never written
            hf.create_dataset("dataset/data", shape=(rows,), dtype=acq, chunks=(1024,))
            return
        table = np.zeros(n, acq)
        for k, row in enumerate(table):
            row["head"]["number_of_samples"] = 4
            row["head"]["active_channels"] = 1
            row["head"]["idx"]["kspace_encode_step_1"] = k
            row["data"] = np.ones(8, np.float32)
            row["traj"] = np.zeros(0, np.float32)
        hf.create_dataset("dataset/data", data=table)


def test_ismrmrd_header_claiming_a_terabyte_matrix_is_refused(tmp_path, bounded_memory):
    path = tmp_path / "raw.h5"
    _ismrmrd(path, make_ismrmrd_header((4, 2, 1)))
    assert read_ismrmrd_raw(path).kspace.shape == (1, 1, 4, 2)  # the honest file reads
    xml = make_ismrmrd_header((4, 10**6, 1), n_slices=250_000)  # 4 * 10**6 * 250000 = 10**12
    _ismrmrd(path, xml)
    with pytest.raises(
        FastMRIFormatError,
        match=r"raw\.h5: k-space of the header's matrix and encoding limits claims shape "
        rf"\(1, 250000, 1, 1, 4, 1000000\) = {8 * TERA} bytes, above the limit",
    ):
        read_ismrmrd_raw(path)


def test_ismrmrd_table_of_a_trillion_acquisitions_is_refused(tmp_path, bounded_memory):
    path = tmp_path / "table.h5"
    _ismrmrd(path, make_ismrmrd_header((4, 2, 1)), rows=TERA)
    with pytest.raises(FastMRIFormatError, match=r"table\.h5: /dataset/data claims shape \(10+,\)"):
        read_ismrmrd_raw(path)


def test_cfl_header_claiming_a_terabyte_is_refused(tmp_path, bounded_memory):
    write_cfl(tmp_path / "ok", np.ones((4, 4, 1, 2), np.complex64))
    assert read_cfl(tmp_path / "ok").shape == (4, 4, 1, 2)
    (tmp_path / "huge.hdr").write_text(
        "# Dimensions\n1000000 1000000 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n"
    )
    (tmp_path / "huge.cfl").write_bytes(bytes(64))
    with pytest.raises(
        FastMRIFormatError,
        match=rf"huge\.hdr: BART data \(complex64\) claims shape \(1000000, 1000000, 1, .*\) = "
        rf"{8 * TERA} bytes, above the limit of \d+ bytes \(GLEAM_MAX_ARRAY_BYTES\)",
    ):
        read_cfl(tmp_path / "huge")
