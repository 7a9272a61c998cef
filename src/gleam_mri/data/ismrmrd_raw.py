"""ISMRMRD HDF5 raw data (mridata.org, OCMR, ``ismrmrd`` tools) into Cartesian k-space arrays.

File layout read (ISMRMRD 1.x): group ``/dataset`` with ``xml`` (the XML header, one string) and
``data`` (one compound record per acquisition: ``head`` struct, ``traj`` float32, ``data`` float32
pairs ``(real, imag)`` in channel-major order ``(active_channels, number_of_samples)``).

Choice of reader: the file is read with ``h5py`` and the header with the standard library's XML
parser (:func:`parse_ismrmrd_header` plus the encoding limits below), not with the ``ismrmrd``
package: the compound layout is small and stable, reading it in chunks with ``h5py`` is fast and
needs no compiled/schema-validated dependency, and a tolerant parser accepts headers from older
converters that strict schema validation would reject. The tests write their files with the
``ismrmrd`` package's own writer, an independent path.

Placement: acquisition samples go to ``(kspace_encode_step_1, kspace_encode_step_2, slice, phase,
average)``. The encoded matrix (``encodedSpace``: x = readout ``H``, y = phase 1 ``W``, z = phase 2
``Z``) fixes the array size; line ``k`` lands at ``k - center + W // 2`` (the encodingLimits
centre goes to the centred-FFT DC index), so partial-Fourier lines missing on one side stay zero
(zero-filled). Readouts shorter than ``x`` (asymmetric echo) are placed so ``center_sample`` lands
at ``H // 2``. ``discard_pre``/``discard_post`` samples are dropped; lines flagged
``ACQ_IS_REVERSE`` are flipped along the readout.

Skipped acquisitions (flag bit numbers of the spec, flag value ``1 << (bit - 1)``): noise
measurements (19), navigators (23), phase correction (24), HP/RT feedback (26, 28), dummy scans
(27), surface-coil correction (29), phase stabilisation (30, 31), other encoding spaces
(``encoding_space_ref != 0``) and repetitions/contrasts/sets other than the selected one.
Calibration-only lines (20) are kept by default: embedded ACS lines are samples of the same
k-space (pass ``include_calibration=False`` for separate reference scans of another contrast).

Readout oversampling: when encodedSpace x is exactly twice reconSpace x, each line is inverse
FFT'd along the readout, the central ``x / 2`` samples (the recon FOV) are kept and it is FFT'd
back (centred orthonormal FFTs), so images keep their values and k-space has ``H = x / 2``.

Partitions in the slice counter (``partitions``): some converters store a 3D acquisition's
partitions in ``idx.slice`` rather than ``kspace_encode_step_2`` (the mridata.org Stanford 3D FSE
knees are read that way by MRSRL/dl-cs and by ad12/meddlr, whose preparation made the GLEAM
paper's data set). ``"slice-kz"`` reads the slice counter as ``kz`` (dl-cs); ``"slice-z"`` reads it
as image-space ``z`` and Fourier-transforms it to ``kz`` after multiplying partition ``n`` by
``(-1)^n`` (meddlr's ``format_mridata_org.py``); both give one 3D volume. The default ``"kz"``
uses ``kspace_encode_step_2``.

Output layout (gleam's, see ``data/fastmri.py``): 2D multi-slice ``(slices, C, H, W)``, 3D
``(1, C, Z, H, W)`` (``slabs`` if the file has several slices), cine ``(slices, C, T, H, W)``
(``T`` = phases). Averages are averaged (each sample over the averages that acquired it) or, with
``average=False``, kept on a new leading axis ``(A, ...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.data.errors import FastMRIFormatError
from gleam_mri.data.ismrmrd_file import LIMIT_NAMES, open_ismrmrd, read_tables
from gleam_mri.data.limits import (
    check_array_size,
)
from gleam_mri.data.raw_kspace import RawKspace, remove_readout_oversampling
from gleam_mri.fft import centred_fft

# ISMRMRD flag bits (1-based, as in the spec); the flag value is 1 << (bit - 1)
ACQ_IS_NOISE_MEASUREMENT = 19
ACQ_IS_PARALLEL_CALIBRATION = 20
ACQ_IS_REVERSE = 22
SKIPPED_BITS = (19, 23, 24, 26, 27, 28, 29, 30, 31)
PARTITIONS = ("kz", "slice-kz", "slice-z")
COUNTERS = ("kspace_encode_step_1", "kspace_encode_step_2", "slice", "phase", "average")


def flag_value(bit: int) -> int:
    """The ``flags`` value of ISMRMRD flag ``bit`` (1-based): ``1 << (bit - 1)``."""
    return 1 << (bit - 1)


# ----------------------------------------------------------------------------------- reading


def _counter_range(name: str, limits: dict, observed: np.ndarray) -> tuple[int, int]:
    """``(minimum, size)`` of a counter: from its encoding limit, else from the data."""
    limit = limits.get(LIMIT_NAMES[name])
    if limit is None:
        return 0, int(observed.max(initial=0)) + 1
    return limit[0], limit[1] - limit[0] + 1


def _check_in_limits(heads: np.ndarray, index: np.ndarray, limits: dict, path: Path) -> None:
    """Raise naming the first acquisition (number ``index[i]``) outside an encoding limit."""
    for counter, limit_name in LIMIT_NAMES.items():
        limit = limits.get(limit_name)
        if limit is None:
            continue
        values = heads["idx"][counter].astype(np.int64)
        bad = np.flatnonzero((values < limit[0]) | (values > limit[1]))
        if bad.size:
            i = int(bad[0])
            raise FastMRIFormatError(
                path,
                f"acquisition {index[i]} has {counter}={values[i]} outside the encoding limits "
                f"{limit_name} {limit[0]}..{limit[1]}",
            )


def read_ismrmrd_raw(
    path: str | Path,
    average: bool = True,
    remove_oversampling: bool = True,
    include_calibration: bool = True,
    repetition: int = 0,
    contrast: int = 0,
    set_index: int = 0,
    partitions: str = "kz",
) -> RawKspace:
    """Read an ISMRMRD HDF5 raw-data file into Cartesian k-space (module docstring).

    ``average``: mean over averages (else a leading axis ``A``). ``repetition``, ``contrast``
    and ``set_index`` select which of those counters is read. ``partitions``: where a 3D
    acquisition's partitions are (:data:`PARTITIONS`, module docstring). Raises
    :class:`FastMRIFormatError` naming the file for a missing ``/dataset/data`` or ``xml``, a
    malformed header, acquisitions outside the encoding limits or the encoded matrix,
    inconsistent channel counts, and files without image acquisitions.
    """
    path = Path(path)
    if partitions not in PARTITIONS:
        raise ValueError(f"partitions must be one of {PARTITIONS}, got {partitions!r}")
    with open_ismrmrd(path) as hf:
        try:
            info, records = read_tables(hf, path)
        except (OSError, RuntimeError, KeyError) as err:  # h5py on damaged HDF5 metadata
            raise FastMRIFormatError(path, f"corrupt HDF5 file: {err}") from err
    heads_all = np.concatenate([r["head"] for r in records]) if records else None
    samples_all = [s for r in records for s in r["data"]]
    if heads_all is None or heads_all.size == 0:
        raise FastMRIFormatError(path, "/dataset/data holds no acquisitions")
    return _assemble(
        path, info, heads_all, samples_all, average, remove_oversampling, include_calibration,
        {"repetition": repetition, "contrast": contrast, "set": set_index}, partitions,
    )  # fmt: skip


def _assemble(
    path: Path,
    info: dict[str, Any],
    heads: np.ndarray,
    samples: list[np.ndarray],
    average: bool,
    remove_oversampling: bool,
    include_calibration: bool,
    select: dict[str, int],
    partitions: str = "kz",
) -> RawKspace:
    flags = heads["flags"].astype(np.uint64)
    skip_bits = (*SKIPPED_BITS, *(() if include_calibration else (ACQ_IS_PARALLEL_CALIBRATION,)))
    skip_mask = np.uint64(sum(flag_value(b) for b in skip_bits))
    keep = ((flags & skip_mask) == 0) & (heads["encoding_space_ref"] == 0)
    for counter, value in select.items():
        keep &= heads["idx"][counter] == value
    info["n_skipped"] = int((~keep).sum())
    info["n_noise"] = int(((flags & np.uint64(flag_value(ACQ_IS_NOISE_MEASUREMENT))) != 0).sum())
    index = np.flatnonzero(keep)
    if index.size == 0:
        raise FastMRIFormatError(
            path, f"no image acquisitions (of {heads.size}, all skipped by flags or selection)"
        )
    _check_in_limits(heads[index], index, info["limits"], path)
    chans = np.unique(heads["active_channels"][index])
    if chans.size != 1 or chans[0] < 1:
        raise FastMRIFormatError(path, f"inconsistent active_channels across acquisitions {chans}")
    n_coils = int(chans[0])
    x_size, y_size, z_size = info["encoding_size"]
    limits = info["limits"]
    idx = heads["idx"][index]
    c1 = limits.get("kspace_encoding_step_1", (0, 0, y_size // 2))[2]
    c2 = limits.get("kspace_encoding_step_2", (0, 0, z_size // 2))[2]
    sizes = {}
    for name in ("slice", "phase", "average"):
        sizes[name] = _counter_range(name, limits, idx[name])
    by_slice = partitions != "kz"
    if by_slice:
        if np.unique(idx["kspace_encode_step_2"]).size > 1:
            raise FastMRIFormatError(
                path, f"partitions={partitions!r} reads the slice counter as the partitions, "
                "but the acquisitions also vary kspace_encode_step_2: read with partitions='kz'",
            )  # fmt: skip
        z_size, c2 = sizes["slice"][1], 0
        sizes["slice"] = (sizes["slice"][0], 1)
    is_3d = z_size > 1
    kind = "3d" if is_3d else ("cine" if sizes["phase"][1] > 1 else "2d")
    if is_3d and sizes["phase"][1] > 1:
        raise FastMRIFormatError(path, "3D data with several phases (3D cine) is not supported")
    n_slices, n_avg = sizes["slice"][1], sizes["average"][1]
    n_t = z_size if is_3d else sizes["phase"][1]
    n_a = 1 if average else n_avg
    shape = (n_a, n_slices, n_coils, n_t, x_size, y_size)
    check_array_size(path, "k-space of the header's matrix and encoding limits", shape, 8)
    acc = np.zeros((n_a, n_slices, n_coils, n_t, x_size, y_size), np.complex64)
    counts = np.zeros((n_a, n_slices, n_t, y_size), np.int32)
    for j, i in enumerate(index):
        head = heads[i]
        line = _line(path, int(i), head, samples[i], n_coils, x_size)
        ky = int(idx["kspace_encode_step_1"][j]) - c1 + y_size // 2
        kz = int(idx["kspace_encode_step_2"][j]) - c2 + z_size // 2 if is_3d else 0
        if by_slice:
            kz = int(idx["slice"][j]) - sizes["slice"][0]
        if not (0 <= ky < y_size and 0 <= kz < z_size):
            raise FastMRIFormatError(
                path,
                f"acquisition {i} (step_1={idx['kspace_encode_step_1'][j]}, "
                f"step_2={idx['kspace_encode_step_2'][j]}) falls outside the encoded matrix "
                f"{(x_size, y_size, z_size)} with centres ({c1}, {c2})",
            )
        s = 0 if by_slice else int(idx["slice"][j]) - sizes["slice"][0]
        t = kz if is_3d else int(idx["phase"][j]) - sizes["phase"][0]
        a = 0 if average else int(idx["average"][j]) - sizes["average"][0]
        acc[a, s, :, t, :, ky] += line
        counts[a, s, t, ky] += 1
    acc /= np.maximum(counts, 1)[:, :, None, :, None, :]
    mask = (counts > 0)[:, :, None, :, None, :]
    if partitions == "slice-z":  # image-space z -> kz, as meddlr's format_mridata_org.py
        acc *= ((-1.0) ** np.arange(z_size)).astype(np.float32)[:, None, None]
        acc = centred_fft(acc, (3,)).astype(np.complex64)
        mask = np.broadcast_to(mask.all(axis=3, keepdims=True), mask.shape).copy()
    recon_x = (info["recon_size"] or (0,))[0]
    info["oversampling_removed"] = bool(remove_oversampling and x_size == 2 * recon_x)
    if info["oversampling_removed"]:
        acc = remove_readout_oversampling(acc, axis=-2)
    if kind == "2d":
        acc, mask = acc[:, :, :, 0], mask[:, :, :, 0]
    if average:
        acc, mask = acc[0], mask[0]
    info["n_averages"] = n_avg
    return RawKspace(acc, mask, info, kind, path, averages_kept=not average)


def _line(
    path: Path, i: int, head: np.void, raw: np.ndarray, n_coils: int, x_size: int
) -> np.ndarray:
    """Samples ``(C, x_size)`` complex64 of acquisition ``i``, placed along the readout."""
    n = int(head["number_of_samples"])
    raw = np.asarray(raw, np.float32)
    if raw.size != 2 * n * n_coils:
        raise FastMRIFormatError(
            path,
            f"acquisition {i} holds {raw.size} floats, expected 2 x {n_coils} channels "
            f"x {n} samples",
        )
    data = raw.view(np.complex64).reshape(n_coils, n)
    pre, post = int(head["discard_pre"]), int(head["discard_post"])
    data = data[:, pre : n - post]
    centre = int(head["center_sample"]) - pre
    if int(head["flags"]) & flag_value(ACQ_IS_REVERSE):
        data, centre = data[:, ::-1], data.shape[1] - 1 - centre
    m = data.shape[1]
    start = 0 if m == x_size else x_size // 2 - centre
    if start < 0 or start + m > x_size:
        raise FastMRIFormatError(
            path,
            f"acquisition {i}: {m} samples with center_sample {centre} do not fit the encoded "
            f"readout of {x_size}",
        )
    out = np.zeros((n_coils, x_size), np.complex64)
    out[:, start : start + m] = data
    return out
