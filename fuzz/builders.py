"""Builders of fuzzed structures for the structured targets of ``targets.py``: HDF5 datasets
and attributes, and ISMRMRD XML headers, from an :class:`atheris.FuzzedDataProvider`."""

from __future__ import annotations

import atheris
import h5py
import numpy as np

_DTYPES = [
    "complex64", "complex128", "float32", "float64", "int8", "uint16", "int64", "bool", "S8",
    "V4", "f2", [("real", "<f4"), ("imag", "<f4")],
]  # fmt: skip
_HUGE = [2**20, 2**31 - 1, 2**32 + 1, 10**6, 10**12 // 7]


def _shape(fdp: atheris.FuzzedDataProvider, huge: bool) -> tuple[int, ...]:
    ndim = fdp.ConsumeIntInRange(0, 6)
    return tuple(
        fdp.PickValueInList(_HUGE) if huge and fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 4)
        for _ in range(ndim)
    )


def fuzzed_array(
    fdp: atheris.FuzzedDataProvider, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    n = int(np.prod(shape)) * dtype.itemsize
    raw = fdp.ConsumeBytes(n)
    raw += bytes(n - len(raw))
    return np.frombuffer(raw, dtype=dtype).reshape(shape) if n else np.zeros(shape, dtype)


def fuzzed_dataset(fdp: atheris.FuzzedDataProvider, hf: h5py.Group, name: str) -> None:
    """A group, a small dataset with fuzzed values, or a huge one whose storage is never written
    (reading it would allocate its full size)."""
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice == 0:
        hf.create_group(name)
        return
    dtype = np.dtype(fdp.PickValueInList(_DTYPES))
    huge = choice == 1
    shape = _shape(fdp, huge)
    if huge:
        chunks = tuple(1 for _ in shape) or None
        hf.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
    else:
        hf.create_dataset(name, data=fuzzed_array(fdp, shape, dtype))


def fuzzed_attr_value(fdp: atheris.FuzzedDataProvider) -> object:
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice == 0:
        return fdp.PickValueInList(["2d", "3d", "cine", "4d", "", "2D"])
    if choice == 1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
    if choice == 2:
        return fdp.ConsumeInt(4)
    if choice == 3:
        return fdp.ConsumeFloat()
    if choice == 4:
        return np.arange(fdp.ConsumeIntInRange(0, 3))
    return fdp.ConsumeUnicode(8)


_TEMPLATE = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<acquisitionSystemInformation><receiverChannels>{c}</receiverChannels>
</acquisitionSystemInformation>
<encoding>
<encodedSpace><matrixSize><x>{x}</x><y>{y}</y><z>{z}</z></matrixSize>
<fieldOfView_mm><x>{x}</x><y>{y}</y><z>1</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>{rx}</x><y>{y}</y><z>{z}</z></matrixSize>
<fieldOfView_mm><x>{x}</x><y>{y}</y><z>1</z></fieldOfView_mm></reconSpace>
<encodingLimits>{limits}</encodingLimits>
<trajectory>cartesian</trajectory>
</encoding>
</ismrmrdHeader>
"""
_LIMITS = (
    "kspace_encoding_step_1", "kspace_encoding_step_2", "slice", "phase", "average",
    "repetition", "contrast", "set",
)  # fmt: skip
_SIZES = [0, 1, 2, 3, 4, 8, 16, 65535, 10**6, 2**31, -1, "x", ""]


def _size(fdp: atheris.FuzzedDataProvider) -> object:
    return (
        fdp.PickValueInList(_SIZES)
        if fdp.ConsumeProbability() < 0.15
        else fdp.ConsumeIntInRange(1, 8)
    )


def fuzzed_header_xml(fdp: atheris.FuzzedDataProvider) -> str:
    limits = []
    for name in _LIMITS:
        if fdp.ConsumeBool():
            lo, hi, centre = (_size(fdp) for _ in range(3))
            limits.append(
                f"<{name}><minimum>{lo}</minimum><maximum>{hi}</maximum>"
                f"<center>{centre}</center></{name}>"
            )
    x = _size(fdp)
    rx = fdp.PickValueInList([x, _size(fdp)])
    text = _TEMPLATE.format(
        c=_size(fdp), x=x, y=_size(fdp), z=_size(fdp), rx=rx, limits="".join(limits)
    )
    if fdp.ConsumeProbability() < 0.1:  # cut it anywhere
        text = text[: fdp.ConsumeIntInRange(0, len(text))]
    return text
