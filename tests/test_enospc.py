"""A full disk during a checkpoint write (ENOSPC, simulated): the previous checkpoint stays intact,
the partial file is removed, and training stops with a clear message (no traceback)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import pytest
import torch

from gleam_mri import cli
from gleam_mri.data.synthetic import SyntheticSpec, write_synthetic_dataset
from gleam_mri.training import checkpoint
from gleam_mri.training.checkpoint import DiskFullError, load_checkpoint, save_checkpoint

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "demo-2d.yaml")
TINY = ["model.unrolls=2", "strategy.modules=2", "model.features=4", "model.blocks=1"]
TINY += ["data.batch_size=2", "train.tensorboard=false", "train.device=cpu", "train.val_every=0"]

real_atomic_write = checkpoint.atomic_write


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes were written."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def full_disk(monkeypatch, room: int, after_saves: int = 0, where: str = "write") -> list[int]:
    """Make checkpoint writes fail with ENOSPC after ``after_saves`` good saves; ``where``:
    in ``torch.save``'s writes (after ``room`` bytes) or in the fsync before the rename."""
    calls = []

    @contextlib.contextmanager
    def failing_write(path, mode, **kwargs):
        calls.append(1)
        failing = len(calls) > after_saves
        if failing and where == "fsync":
            monkeypatch.setattr(os, "fsync", _no_space)
        try:
            with real_atomic_write(path, mode, **kwargs) as file:
                yield _FullDisk(file, room) if failing and where == "write" else file
        finally:
            monkeypatch.setattr(os, "fsync", real_fsync)

    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint, "atomic_write", failing_write)
    return calls


def _no_space(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.arange(4.0)})
    before = path.read_bytes()
    full_disk(monkeypatch, room=300, where=where)
    with pytest.raises(DiskFullError, match="disk is full") as caught:
        save_checkpoint(path, {"step": 2, "w": torch.zeros(10_000)})
    message = str(caught.value)
    assert message.startswith(str(path)) and "previous checkpoint is intact" in message
    assert "--resume" in message and "free now" in message
    if where == "write":
        assert re.search(r"after [1-3]\d\d B of the new checkpoint", message)
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    @contextlib.contextmanager
    def broken(path, mode, **kwargs):
        with real_atomic_write(path, mode, **kwargs):
            raise OSError(errno.EIO, "Input/output error")
        yield

    monkeypatch.setattr(checkpoint, "atomic_write", broken)
    with pytest.raises(OSError, match="Input/output") as caught:
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    assert not isinstance(caught.value, DiskFullError)


def test_training_stops_with_a_clear_message_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    spec = SyntheticSpec(n_volumes=4, slices_per_volume=2, shape=(32, 24), n_coils=3, seed=1)
    write_synthetic_dataset(data, spec, progress=False)
    out = tmp_path / "run"
    args = ["train", CONFIG, "--quiet"]
    for s in [f"data.root={data}", f"train.out_dir={out}", *TINY, "train.steps=4"]:
        args += ["--set", s]
    calls = full_disk(monkeypatch, room=1000, after_saves=2)
    assert cli.main([*args, "--set", "train.ckpt_every=1"]) == 3
    err = capsys.readouterr().err
    assert len(calls) == 3 and "Traceback" not in err
    assert "training stopped after step 3" in err and "the disk is full" in err
    assert str(out / "last.pt") in err and "previous checkpoint is intact" in err
    assert load_checkpoint(out / "last.pt")["step"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    # the kept checkpoint is the one of an uninterrupted 2-step run, and it resumes
    monkeypatch.setattr(checkpoint, "atomic_write", real_atomic_write)
    ref = tmp_path / "ref"
    two = [a.replace(f"train.out_dir={out}", f"train.out_dir={ref}") for a in args]
    assert cli.main([*two, "--set", "train.steps=2"]) == 0
    kept, straight = load_checkpoint(out / "last.pt"), load_checkpoint(ref / "last.pt")
    for name, value in straight["model"].items():
        assert torch.equal(kept["model"][name], value), name
    assert cli.main([*args, "--resume"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 4
    capsys.readouterr()
