"""gleam serve reads each upload first in a child process (serve/quarantine.py): a reader that
crashes or hangs fails the job, not the service; refusals carry the reader's message."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from gleam_mri.data.fastmri import read_fastmri
from gleam_mri.serve import quarantine
from gleam_mri.serve.quarantine import ReaderFailed, read_in_child
from test_serve_support import tiny_scans


def _reader(monkeypatch, code: str) -> None:
    monkeypatch.setattr(quarantine, "READER", (sys.executable, "-c", code))


def test_a_crashing_reader_fails_the_job_with_the_signal(tmp_path, monkeypatch):
    _reader(monkeypatch, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ReaderFailed, match=r"crashed the reader \(SIGSEGV\)"):
        read_in_child(tmp_path / "x.h5", tmp_path / "c.h5", time.monotonic() + 30)


def test_a_hanging_reader_is_killed_at_the_time_limit(tmp_path, monkeypatch):
    _reader(monkeypatch, "import time; time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(ReaderFailed, match="longer than the service's time limit"):
        read_in_child(tmp_path / "x.h5", tmp_path / "c.h5", started + 1.0)
    assert time.monotonic() - started < 10


def test_cancellation_stops_the_child(tmp_path, monkeypatch):
    _reader(monkeypatch, "import time; time.sleep(60)")
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt  # what JobCancelled does in the worker

    with pytest.raises(KeyboardInterrupt):
        read_in_child(tmp_path / "x.h5", tmp_path / "c.h5", time.monotonic() + 60, check)


def test_real_reader_passes_good_files_and_names_the_problem_of_bad_ones(tmp_path):
    good = tiny_scans(tmp_path / "scans", n=1, slices=2)[0]
    deadline = time.monotonic() + 60
    assert read_in_child(good, tmp_path / "c.h5", deadline) == good  # fastMRI: read in place
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as hf:
        hf["kspace"] = np.zeros((2, 3), np.float32)  # not (slices, coils, H, W) complex
    with pytest.raises(ReaderFailed, match=r"bad\.h5"):
        read_in_child(bad, tmp_path / "c2.h5", deadline)
    text = tmp_path / "notes.dat"
    text.write_text("not a raw-data file")
    with pytest.raises(ReaderFailed, match=r"notes\.dat"):
        read_in_child(text, tmp_path / "c3.h5", deadline)
    assert not Path(tmp_path / "c3.h5").exists()
    assert read_fastmri(good).kspace.shape[0] == 2
