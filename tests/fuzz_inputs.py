"""Inputs and a guard shared by the fuzz regression tests (``tests/test_fuzz_regressions*.py``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gleam_mri.data.fastmri import write_fastmri

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"


def refused_within(seconds: float, call: Callable[[], object], match: str) -> None:
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


def fastmri_file(path: Path) -> Path:
    kspace = np.ones((1, 2, 4, 4), np.complex64)
    return write_fastmri(path, kspace, attrs={"acquisition": "AXT1"})
