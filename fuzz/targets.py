"""Fuzz targets: one per reader that takes a file from outside (issue 14).

Each target takes the fuzzer's bytes, turns them into the reader's input (a file in a scratch
folder, or a structure built with :class:`atheris.FuzzedDataProvider`), calls the reader and
accepts only the project's documented error types:

- data files (fastMRI, ISMRMRD, twix, BART CFL, ``gleam convert``): :class:`FastMRIFormatError`
  (with its subclasses ``FastMRIFileNotFoundError`` and ``CflFormatError``);
- configs (YAML files and ``--set`` overrides): :class:`ConfigError`;
- checkpoints: :class:`CheckpointError`.

Any other exception is a failure (atheris reports it with the input that caused it), and so are
a hang (libFuzzer's ``-timeout``, per input) and memory beyond the stated bound: the readers
refuse arrays larger than ``GLEAM_MAX_ARRAY_BYTES`` before allocating them
(:mod:`gleam_mri.data.limits`); this process sets that to 256 MiB and ``fuzz/run.py`` runs it
under ``-rss_limit_mb=2048``, so a reader that allocates what a header claims is caught.

Run one target: ``python fuzz/targets.py NAME [libFuzzer flags] [corpus folders]`` (``fuzz/run.py``
does this for you and reports the inputs tried and the failures).
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

MAX_ARRAY_BYTES = 256 * 2**20  # the readers' bound while fuzzing (GLEAM_MAX_ARRAY_BYTES)
os.environ["GLEAM_MAX_ARRAY_BYTES"] = str(MAX_ARRAY_BYTES)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import atheris  # noqa: E402

with atheris.instrument_imports(include=["gleam_mri", "twixtools", "yaml"]):
    import h5py
    import numpy as np

    from gleam_mri.data.cfl import read_cfl
    from gleam_mri.data.errors import FastMRIFormatError
    from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri
    from gleam_mri.data.ismrmrd_header import parse_ismrmrd_header
    from gleam_mri.data.ismrmrd_raw import read_ismrmrd_raw
    from gleam_mri.data.raw import read_raw
    from gleam_mri.data.twix import read_twix
    from gleam_mri.schema import ConfigError
    from gleam_mri.training.checkpoint import CheckpointError, load_checkpoint
    from gleam_mri.training.run_config import load_config

# fuzz/builders.py, beside this file (the script's folder is on sys.path)
from builders import (  # noqa: E402
    fuzzed_array,
    fuzzed_attr_value,
    fuzzed_dataset,
    fuzzed_header_xml,
)

SCRATCH = Path(os.environ.get("GLEAM_FUZZ_SCRATCH") or tempfile.mkdtemp(prefix="gleam-fuzz-"))
SCRATCH.mkdir(parents=True, exist_ok=True)

DATA_ERRORS = (FastMRIFormatError,)
CONFIG_ERRORS = (ConfigError,)
CHECKPOINT_ERRORS = (CheckpointError,)


def _file(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------- raw-byte targets


def fastmri(data: bytes) -> None:
    """The bytes as a fastMRI-layout HDF5 file: inspect, then read all slices."""
    path = _file("input.h5", data)
    try:
        inspect_fastmri(path)
        read_fastmri(path)
    except DATA_ERRORS:
        pass


def ismrmrd(data: bytes) -> None:
    """The bytes as an ISMRMRD HDF5 raw-data file."""
    path = _file("raw.h5", data)
    try:
        read_ismrmrd_raw(path)
    except DATA_ERRORS:
        pass


def ismrmrd_header(data: bytes) -> None:
    """The bytes as the ISMRMRD XML header (as bytes and, when it decodes, as text)."""
    try:
        parse_ismrmrd_header(data, source="header.xml")
    except DATA_ERRORS:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_ismrmrd_header(text, source="header.xml")
    except DATA_ERRORS:
        pass


def twix(data: bytes) -> None:
    """The bytes as a Siemens twix ``.dat`` file."""
    path = _file("meas.dat", data)
    try:
        read_twix(path)
    except DATA_ERRORS:
        pass


def _split(data: bytes) -> tuple[bytes, bytes]:
    """A 2-byte little-endian length, then that many bytes, then the rest."""
    if len(data) < 2:
        return data, b""
    (n,) = struct.unpack("<H", data[:2])
    return data[2 : 2 + n], data[2 + n :]


def cfl(data: bytes) -> None:
    """A BART pair: the input is ``len(hdr)`` (2 bytes LE), ``hdr`` text, then the ``.cfl`` bytes.

    Read with :func:`read_cfl` and through ``gleam convert``'s reader (BART -> gleam k-space)."""
    hdr, body = _split(data)
    _file("bart.hdr", hdr)
    _file("bart.cfl", body)
    for reader in (read_cfl, read_raw):
        try:
            reader(SCRATCH / "bart.cfl")
        except DATA_ERRORS:
            pass


def convert(data: bytes) -> None:
    """``gleam convert``'s format detection and reading, on a file without a telling suffix."""
    path = _file("upload", data)
    try:
        read_raw(path)
    except DATA_ERRORS:
        pass


def config_yaml(data: bytes) -> None:
    """The bytes as a YAML config file."""
    path = _file("config.yaml", data)
    try:
        load_config(path)
    except CONFIG_ERRORS:
        pass


def config_set(data: bytes) -> None:
    """``--set`` overrides: the input's lines (UTF-8, invalid bytes replaced) on the defaults."""
    overrides = data.decode("utf-8", errors="replace").split("\n")
    try:
        load_config(None, overrides)
    except CONFIG_ERRORS:
        pass


def checkpoint(data: bytes) -> None:
    """The bytes as a checkpoint file (``torch.load(weights_only=True)``)."""
    path = _file("ckpt.pt", data)
    try:
        load_checkpoint(path)
    except CHECKPOINT_ERRORS:
        pass


# ------------------------------------------------------------------------------- structured targets


def fastmri_struct(data: bytes) -> None:
    """A fastMRI-layout HDF5 file built from the input: which of ``kspace``,
    ``reconstruction_rss``, ``maps``, ``mask``, ``ismrmrd_header`` exist, as what (group,
    dataset of some dtype and shape, huge unwritten dataset), with which attrs."""
    fdp = atheris.FuzzedDataProvider(data)
    path = SCRATCH / "struct.h5"
    names = ["kspace", "reconstruction_rss", "maps", "mask", "ismrmrd_header", "other"]
    try:
        with h5py.File(path, "w") as hf:
            for _ in range(fdp.ConsumeIntInRange(0, 6)):
                name = fdp.PickValueInList(names)
                if name in hf:
                    continue
                if name == "ismrmrd_header" and fdp.ConsumeBool():
                    xml = fuzzed_header_xml(fdp).encode()
                    hf.create_dataset(name, data=fdp.PickValueInList([xml, np.array([xml])]))
                else:
                    fuzzed_dataset(fdp, hf, name)
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                key = fdp.PickValueInList(["gleam_kind", "max", "norm", "acquisition", "x"])
                hf.attrs[key] = fuzzed_attr_value(fdp)
    except (ValueError, TypeError, OSError, OverflowError):
        return  # the builder could not make this file; nothing to read
    sel = fdp.PickValueInList([None, 0, -1, slice(0, 2), slice(None, None, 2)])
    try:
        inspect_fastmri(path)
        read_fastmri(path, sel)
    except DATA_ERRORS:
        pass
    except IndexError as err:  # documented: a slice index out of range
        if "out of range" not in str(err):
            raise


_COUNTERS = np.dtype([
    (name, "<u2") for name in (
        "kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast", "phase",
        "repetition", "set", "segment",
    )
])  # fmt: skip
_HEAD = np.dtype([
    ("flags", "<u8"), ("number_of_samples", "<u2"), ("active_channels", "<u2"),
    ("discard_pre", "<u2"), ("discard_post", "<u2"), ("center_sample", "<u2"),
    ("encoding_space_ref", "<u2"), ("idx", _COUNTERS),
])  # fmt: skip
_VLEN_F4 = h5py.vlen_dtype(np.dtype("float32"))
_ACQ = np.dtype([("head", _HEAD), ("traj", _VLEN_F4), ("data", _VLEN_F4)])
_ACQ_BROKEN = [
    np.dtype([("head", _HEAD)]),
    np.dtype([("head", [("flags", "<u8")]), ("data", _VLEN_F4)]),
    np.dtype([("head", "<i4"), ("data", _VLEN_F4)]),
]
_FLAGS = [0, 1 << 18, 1 << 19, 1 << 21, 1 << 22, 1 << 63]


def ismrmrd_struct(data: bytes) -> None:
    """An ISMRMRD raw-data file built from the input: a fuzzed XML header (matrix sizes and
    encoding limits, some absurd) and a table of acquisitions with fuzzed counters, flags,
    channel and sample counts and data lengths (sometimes a table of the wrong type)."""
    fdp = atheris.FuzzedDataProvider(data)
    path = SCRATCH / "struct_raw.h5"
    n_acq = fdp.ConsumeIntInRange(0, 6)
    broken = fdp.ConsumeProbability() < 0.1
    dtype = fdp.PickValueInList(_ACQ_BROKEN) if broken else _ACQ
    table = np.zeros(n_acq, dtype)
    for name in ("traj", "data"):
        if name in dtype.names:  # variable-length fields start as 0, which h5py cannot write
            for i in range(n_acq):
                table[i][name] = np.zeros(0, np.float32)
    for i in range(n_acq):
        if dtype is not _ACQ:
            break
        head = table[i]["head"]
        head["flags"] = fdp.PickValueInList(_FLAGS)
        channels = fdp.ConsumeIntInRange(0, 3)
        samples = fdp.ConsumeIntInRange(0, 10)
        head["active_channels"] = channels
        head["number_of_samples"] = samples
        for field in ("discard_pre", "discard_post", "center_sample"):
            head[field] = fdp.ConsumeIntInRange(0, 12) if fdp.ConsumeBool() else 0
        for counter in _COUNTERS.names:
            big = fdp.ConsumeProbability() < 0.05
            head["idx"][counter] = 65535 if big else fdp.ConsumeIntInRange(0, 4)
        n = 2 * channels * samples + (fdp.ConsumeIntInRange(-2, 2) if fdp.ConsumeBool() else 0)
        table[i]["data"] = fuzzed_array(fdp, (max(n, 0),), np.dtype("float32")).copy()
        table[i]["traj"] = np.zeros(0, np.float32)
    try:
        with h5py.File(path, "w") as hf:
            group = hf.create_group("dataset")
            if fdp.ConsumeProbability() < 0.95:
                xml = fuzzed_header_xml(fdp).encode()
                group.create_dataset("xml", data=fdp.PickValueInList([xml, np.array([xml])]))
            if fdp.ConsumeProbability() < 0.95:
                group.create_dataset("data", data=table, maxshape=(None,))
    except (ValueError, TypeError, OSError, OverflowError):
        return
    options = {
        "average": fdp.ConsumeBool(),
        "remove_oversampling": fdp.ConsumeBool(),
        "include_calibration": fdp.ConsumeBool(),
    }
    try:
        read_ismrmrd_raw(path, **options)
    except DATA_ERRORS:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "fastmri": fastmri,
    "fastmri_struct": fastmri_struct,
    "ismrmrd": ismrmrd,
    "ismrmrd_struct": ismrmrd_struct,
    "ismrmrd_header": ismrmrd_header,
    "twix": twix,
    "cfl": cfl,
    "convert": convert,
    "config_yaml": config_yaml,
    "config_set": config_set,
    "checkpoint": checkpoint,
}


def _saving(name: str, target: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``target``, saving an input that raises to ``$GLEAM_FUZZ_ARTIFACTS/NAME-exception-SHA1``
    first (libFuzzer saves none for a seed that fails while the corpus is loaded)."""
    folder = os.environ.get("GLEAM_FUZZ_ARTIFACTS")

    def run(data: bytes) -> None:
        try:
            target(data)
        except BaseException:
            if folder:
                import hashlib

                digest = hashlib.sha1(data).hexdigest()
                Path(folder, f"{name}-exception-{digest}").write_bytes(data)
            raise

    return run


def _batch(spec_path: str) -> None:
    """Run several targets one after another, each in a forked child (the imports above, torch
    included, are paid once). ``spec_path``: JSON list of ``{"target", "args", "log"}``; each
    child's output goes to its ``log`` and its exit status is written to ``log + ".rc"``."""
    import json

    for job in json.loads(Path(spec_path).read_text()):
        pid = os.fork()
        if pid == 0:  # child: libFuzzer ends it with exit(); never returns
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                atheris.Setup(
                    [sys.argv[0], *job["args"]], _saving(job["target"], TARGETS[job["target"]])
                )
                atheris.Fuzz()
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        Path(job["log"] + ".rc").write_text(str(rc))


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--batch":
        _batch(argv[2])
        return
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(
            f"usage: {argv[0]} TARGET [libFuzzer flags] [corpus...]; TARGET in {list(TARGETS)}"
        )
    atheris.Setup([argv[0], *argv[2:]], _saving(argv[1], TARGETS[argv[1]]))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
