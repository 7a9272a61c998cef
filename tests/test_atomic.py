"""Atomic writes: the target is replaced whole or not at all, and no temporary file is left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gleam_mri.atomic import atomic_path, atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("durable", [False, True])
def test_write_replaces_the_target(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with atomic_write(target, durable=durable) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new"
    with atomic_write(target, "w", encoding="utf-8") as file:
        file.write("text")
    assert target.read_text() == "text"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), atomic_write(target) as file:
        file.write(b"half")
        raise error
    with pytest.raises(type(error)), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise error
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_path_suffix_permissions_and_default_mode(tmp_path: Path) -> None:
    target = tmp_path / "v.nii.gz"
    with atomic_path(target, suffix=".nii.gz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and tmp.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(target) == 0o666 & ~umask  # as open(path, "w") creates a new file
    with atomic_write(target, permissions=0o600) as file:
        file.write(b"y")
    assert _mode(target) == 0o600


def test_read_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="write mode"), atomic_write(tmp_path / "a", "rb"):
        pass
    assert list(tmp_path.iterdir()) == []
