"""Siemens twix (``.dat``, VB and VD/VE) raw data into Cartesian k-space, via ``twixtools``.

Choices:

- The last measurement of a multi-RAID file is the imaging scan (the earlier ones are adjustment
  scans such as the noise measurement); only it is read.
- Only image scans are used (``twixtools``' ``is_image_scan``): noise adjustment, phase
  correction (EPI navigators), real-time / HP feedback, phase stabilisation, sync data and
  reference-only (PATREFSCAN without PATREFANDIMASCAN) lines are skipped.
- Lines are placed by their line counter with the k-space centre line (the MDH ``CenterLin``) at
  ``W // 2``; ``W`` is the protocol's phase-encoding line count (``sKSpace.lPhaseEncodingLines``)
  widened where needed so that every line fits, so partial-Fourier lines stay zero-filled.
- Readouts are placed with the MDH ``CenterCol`` at the centre (asymmetric echoes zero-filled);
  lines flagged ``REFLECT`` (EPI's reversed readouts) are flipped.
- Readout oversampling (``flReadoutOSFactor`` 2, the Siemens default) is removed: centred inverse
  FFT along the readout, central crop to half, FFT back (orthonormal, image values unchanged).
- Averages (``Ave``) are averaged; repetitions, echoes, sets, phases and segments other than the
  selected ones are not separated: ``repetition`` and ``echo`` pick one, other counters are
  averaged per line. 3D (several partitions) data is rejected as unsupported.
- EPI is read as raw lines (reflected lines flipped) without ramp-sampling regridding or N/2-ghost
  phase correction: ``header["warnings"]`` says so; the images are not diagnostic.

Output: :class:`gleam_mri.data.ismrmrd_raw.RawKspace` with ``kspace`` complex64
``(slices, C, H, W)`` (``H`` readout after oversampling removal) and kind ``"2d"``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gleam_mri.data.errors import FastMRIFileNotFoundError, FastMRIFormatError
from gleam_mri.data.limits import check_array_size
from gleam_mri.data.raw_kspace import RawKspace, remove_readout_oversampling

_UNREADABLE = "not a readable Siemens twix file"


def _looks_like_twix(path: Path) -> str | None:
    """``None`` if the file starts like a twix file (VD/VE RAID header or VB measurement
    header), else the reason it does not."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
    if len(head) < 16:
        return f"file is too short ({size} bytes)"
    first, second = (int(v) for v in np.frombuffer(head[:8], "<u4"))
    if first == 0 and 1 <= second <= 64:  # VD/VE: MrParcRaidFileHeader (hdSize 0, count)
        return None
    if 0 < first < size and 1 <= second <= 64 and head[8:14].isalpha():  # VB: length, buffers
        return None
    return "neither a VB nor a VD/VE twix header at the start of the file"


_MAX_STEPS_PAST_END = 100_000  # zero headers twixtools walks past the end of a truncated file


def _check_mdb_chain(path: Path, size: int) -> None:
    """Walk the measurement data blocks as ``twixtools.read_twix`` will, reading headers only, and
    refuse a chain it would never finish: a block length (DMA length) shorter than a header (0
    makes it loop forever in place, appending the same block), or a measurement that claims far
    more bytes than the file has (it steps through the missing bytes 192 at a time)."""
    from twixtools import hdr_def, mdh_def

    with path.open("rb") as fh:
        head = fh.read(hdr_def.MultiRaidFileHeader.itemsize)
        first, second = (int(v) for v in np.frombuffer(head[:8], "<u4"))
        is_ve = first < 10000 and second <= 64  # twixtools' own test (helpers.idea_version_check)
        if is_ve:
            if len(head) < hdr_def.MultiRaidFileHeader.itemsize:
                return  # twixtools fails on the short header itself
            raid = np.frombuffer(head, hdr_def.MultiRaidFileHeader)[0]
            entries = [(int(e["off_"]), int(e["len_"])) for e in raid["entry"][:second]]
            if second == 1 and entries[0][1] == 0:
                entries = [(entries[0][0], size - entries[0][0])]
        else:
            entries = [(0, size)]
        header_type = mdh_def.Scan_header if is_ve else mdh_def.VB17_header
        mdh_size = ctypes.sizeof(header_type)
        channel_size = ctypes.sizeof(mdh_def.Channel_header)
        for k, (offset, length) in enumerate(entries):
            end = offset + length
            if offset >= size or end >= 2**64:
                raise FastMRIFormatError(
                    path,
                    f"{_UNREADABLE}: measurement {k} at bytes {offset}..{end} lies outside "
                    f"the file ({size} bytes)",
                )
            fh.seek(offset)
            pos = offset + int.from_bytes(fh.read(4).ljust(4, b"\0"), "little")  # hdr_len
            dma = None
            while pos + 128 < end:
                if pos >= size:  # past the end: twixtools reads zero headers
                    steps = (end - 128 - pos + 191) // 192 if is_ve else None
                    if steps is None or steps > _MAX_STEPS_PAST_END:
                        raise FastMRIFormatError(
                            path,
                            f"{_UNREADABLE}: measurement {k} claims {length} bytes from byte "
                            f"{offset}, but the file ends at {size}",
                        )
                    break
                fh.seek(pos)
                mdh = header_type.from_buffer_copy(fh.read(mdh_size).ljust(mdh_size, b"\0"))
                if mdh_def.is_flag_set(mdh, "ACQEND") or mdh_def.is_flag_set(mdh, "SYNCDATA"):
                    new = int(mdh_def.get_dma_len(mdh))
                else:
                    block = 8 * mdh.SamplesInScan + (channel_size if is_ve else mdh_size)
                    new = (mdh.UsedChannels * block + (mdh_size if is_ve else 0)) % 2**32
                    data_end = pos + mdh_size + mdh.UsedChannels * block
                    if is_ve and data_end > size and dma is not None:
                        new = dma  # twixtools fails on the short block and reuses the last one
                if new < mdh_size:
                    raise FastMRIFormatError(
                        path,
                        f"{_UNREADABLE}: block at byte {pos} has length {new}, shorter than "
                        f"its {mdh_size}-byte header",
                    )
                if mdh_def.is_flag_set(mdh, "ACQEND"):
                    break
                dma = new
                pos += new


def _load(path: Path) -> dict[str, Any]:
    """The last measurement of the file as ``twixtools`` returns it."""
    import twixtools

    if not path.is_file():
        raise FastMRIFileNotFoundError(path, "file not found")
    problem = _looks_like_twix(path)
    if problem is not None:
        raise FastMRIFormatError(path, f"not a Siemens twix file: {problem}")
    _check_mdb_chain(path, path.stat().st_size)
    # twixtools prints progress notes even with verbose=False, and leaves the file open when it
    # fails (the ResourceWarning of that file is silenced here)
    quiet = (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()))
    with warnings.catch_warnings(), quiet[0], quiet[1]:
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            scans = twixtools.read_twix(str(path), verbose=False)
        except Exception as err:  # twixtools raises assorted errors on damaged files
            problem = f"{type(err).__name__}: {err}"
            del err
            gc.collect()
    if problem is not None:
        raise FastMRIFormatError(path, f"{_UNREADABLE} ({problem})")
    if not scans or not isinstance(scans[-1], dict) or "mdb" not in scans[-1]:
        raise FastMRIFormatError(path, "not a Siemens twix file: no measurement found")
    return scans[-1]


def _protocol(meas: dict[str, Any]) -> dict[str, Any]:
    hdr = meas.get("hdr") or {}
    yaps = hdr.get("MeasYaps") or {}
    kspace = yaps.get("sKSpace") or {}
    return {
        "base_resolution": kspace.get("lBaseResolution"),
        "phase_encoding_lines": kspace.get("lPhaseEncodingLines"),
        "partitions": kspace.get("lPartitions"),
        "readout_os_factor": (hdr.get("Meas") or {}).get("flReadoutOSFactor"),
        "protocol_name": yaps.get("tProtocolName"),
        "sequence": (hdr.get("Meas") or {}).get("tSequenceFileName"),
    }


def _number(path: Path, info: dict[str, Any], key: str) -> float | None:
    """The protocol field ``key`` as a number (``None`` when absent); a value that is not one is
    a format error (found by fuzzing: a damaged header gave a string)."""
    value = info[key]
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise FastMRIFormatError(path, f"the protocol's {key} is not a number: {value!r:.80}")
    return number


def read_twix(
    path: str | Path,
    remove_oversampling: bool = True,
    repetition: int = 0,
    echo: int = 0,
) -> RawKspace:
    """Read the image scans of a Siemens twix file into ``(slices, C, H, W)`` k-space.

    See the module docstring for the choices made. Raises :class:`FastMRIFormatError` naming the
    file for files ``twixtools`` cannot parse, files without image scans, inconsistent channel
    counts and 3D (multi-partition) data.
    """
    path = Path(path)
    meas = _load(path)
    info = _protocol(meas)
    scans = [
        m for m in meas["mdb"] if m.is_image_scan() and m.cRep == repetition and m.cEco == echo
    ]
    if not scans:
        raise FastMRIFormatError(path, "no image scans in the last measurement")
    if any(m.cPar != scans[0].cPar for m in scans):
        raise FastMRIFormatError(path, "3D twix data (several partitions) is not supported")
    shapes = {m.data.shape for m in scans}
    if len(shapes) != 1:
        raise FastMRIFormatError(path, f"image scans differ in (channels, samples): {shapes}")
    n_coils, n_col = next(iter(shapes))
    if n_coils < 1 or n_col < 1:  # found by fuzzing: an FFT of 0 points further on
        raise FastMRIFormatError(
            path, f"the image scans hold no samples: (channels, samples) = {(n_coils, n_col)}"
        )
    centre_col = int(scans[0].mdh.CenterCol) or n_col // 2
    x_size = 2 * max(centre_col, n_col - centre_col)
    centre_lin = int(scans[0].mdh.CenterLin)
    lines = np.array([m.cLin for m in scans])
    y_size = max(
        int(_number(path, info, "phase_encoding_lines") or 0),
        2 * centre_lin,
        2 * (int(lines.max()) - centre_lin + 1),
    )
    n_slices = max(m.cSlc for m in scans) + 1
    shape = (n_slices, n_coils, x_size, y_size)
    check_array_size(path, "k-space of the protocol's lines and the scans' counters", shape, 8)
    acc = np.zeros((n_slices, n_coils, x_size, y_size), np.complex64)
    counts = np.zeros((n_slices, y_size), np.int32)
    start = x_size // 2 - centre_col
    n_reflected = 0
    for m in scans:
        data = np.asarray(m.data, np.complex64)
        if m.is_flag_set("REFLECT"):
            data = data[:, ::-1]
            n_reflected += 1
        ky = m.cLin - centre_lin + y_size // 2
        acc[m.cSlc, :, start : start + n_col, ky] += data
        counts[m.cSlc, ky] += 1
    acc /= np.maximum(counts, 1)[:, None, None, :]
    os_factor = _number(path, info, "readout_os_factor")
    removed = bool(remove_oversampling and (os_factor is None or os_factor == 2.0))
    if removed:
        acc = remove_readout_oversampling(acc, axis=-2)
    notes = []
    if n_reflected:
        notes.append(
            "EPI-like data (REFLECT lines flipped): no ramp-sampling regridding or N/2-ghost "
            "phase correction applied"
        )
    info.update(
        n_coils=n_coils,
        samples_per_line=n_col,
        center_col=centre_col,
        center_line=centre_lin,
        oversampling_removed=removed,
        recon_size=None,
        n_image_scans=len(scans),
        n_skipped=len(meas["mdb"]) - len(scans),
        warnings=notes,
        xml=None,
    )
    mask = (counts > 0)[:, None, None, :]
    return RawKspace(acc, mask, info, "2d", path)
