"""Uploads are read first in a child process, so that a file the readers choke on cannot take the
service down.

The readers rest on libhdf5 and twixtools, C and Python code that a crafted file has made loop
forever with the GIL held, crash or allocate gigabytes (``fuzz/``, ``benchmarks/RESULTS.md``).
Those cases are refused now, but the next one would stop every job of a service that reads uploads
in its own process: a thread cannot be stopped inside C code. So before a job runs, a child process
(``python -m gleam_mri.serve.quarantine SOURCE CONVERTED``) reads the whole upload: a fastMRI-layout
file slice by slice with :func:`~gleam_mri.data.fastmri.read_fastmri`, as the datasets read it,
a raw-data file by converting it (:func:`~gleam_mri.data.convert.convert`) into ``CONVERTED``, a
file this project wrote. Only when the child succeeds does the worker read the file (the same
reads, now known to end) or the converted one; the reconstruction is the same as without the
child. A child that is refused prints the reader's message (exit code 2), one that crashes or runs
past the job's time limit fails the job with what happened; the service carries on.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

READER: Sequence[str] = (sys.executable, "-m", "gleam_mri.serve.quarantine")


class ReaderFailed(Exception):
    """The child process refused the upload, crashed or ran past the time limit."""


def read_in_child(
    source: Path, converted: Path, deadline: float, check: Callable[[], None] | None = None
) -> Path:
    """Read ``source`` in a child process; returns the file the worker should reconstruct
    (``source`` itself for the fastMRI layout, else ``converted``, written by the child).

    ``deadline`` is a :func:`time.monotonic` time; ``check`` is called about every 0.1 s and may
    raise to stop (cancellation): the child is killed first. Raises :class:`ReaderFailed` with the
    reader's message, the signal that ended the child, or the time limit.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [*READER, str(source), str(converted)], stdout=subprocess.DEVNULL, stderr=errors
        )
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise ReaderFailed(
                        "reading the file took longer than the service's time limit "
                        "(--job-timeout); it was stopped"
                    )
                if check is not None:
                    check()
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ReaderFailed(f"the file crashed the reader ({name}); it cannot be read")
    if proc.returncode != 0:
        raise ReaderFailed(lines[-1] if lines else f"the reader failed ({proc.returncode})")
    return converted if converted.exists() else source


def _has_kspace(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as hf:
        return "kspace" in hf


def main(argv: Sequence[str] | None = None) -> int:
    """The child: read ``SOURCE`` whole, or convert it to ``CONVERTED``; exit 2 with the
    reader's message on stderr when it is refused."""
    source, converted = (Path(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        import h5py

        if source.suffix == ".h5" and h5py.is_hdf5(source) and _has_kspace(source):
            from gleam_mri.data.fastmri import inspect_fastmri, read_fastmri

            for i in range(inspect_fastmri(source).num_slices):  # as the datasets read it
                read_fastmri(source, slices=i)
        else:
            from gleam_mri.data.convert import convert

            convert(source, converted)
    except Exception as err:  # the reader's message, for the job's error
        print(" ".join((str(err) or type(err).__name__).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
