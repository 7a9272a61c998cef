"""Atomic file writes: write a temporary file in the target's folder, then ``os.replace`` it.

The rename within one folder is atomic, so readers see the previous file or the complete new one,
never a half-written file. Any exception before the rename (``BaseException``: Ctrl-C included)
removes the temporary file and leaves the target untouched.

- :func:`atomic_write` yields an open file object (``torch.save``, text, bytes).
- :func:`atomic_path` yields the temporary file's path, for writers that take a file name
  (``h5py``, ``nibabel``, ``pydicom``, ``matplotlib``, ``numpy.tofile``).

The temporary file ``.{name}.{random}{suffix}`` is created as ``open(path, "w")`` would create a
new file (mode ``0o666`` less the umask); ``permissions`` sets other mode bits before the rename.
With ``durable`` the file is fsynced before the rename and the folder after it (POSIX), so the
new content survives a power loss once the call returns.

A process killed (``SIGKILL``, power loss) inside a write leaves its temporary file behind;
:func:`remove_stale_temporaries` deletes those of a target once no writer can still hold them
(e.g. when a killed training run is resumed).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_TRIES = 100


def _create_temporary(path: Path, suffix: str) -> Path:
    """An empty new file next to ``path`` whose name no other writer holds."""
    for _ in range(_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: no free temporary file name after {_TRIES} tries")


def remove_stale_temporaries(path: str | Path, suffix: str = ".tmp") -> list[Path]:
    """Delete the temporary files that writers of ``path`` killed mid-write left behind.

    Only names this module creates (``.{name}.{8 hex digits}{suffix}``) are removed; call it only
    when no other process is writing ``path``. Returns the removed paths.
    """
    target = Path(path)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}{re.escape(suffix)}")
    if not target.parent.is_dir():
        return []
    removed = []
    for name in sorted(os.listdir(target.parent)):
        if pattern.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target.parent / name)
                removed.append(target.parent / name)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(
    path: str | Path, permissions: int | None, durable: bool, suffix: str, fsync_file: bool
) -> Iterator[Path]:
    target = Path(path)
    tmp = _create_temporary(target, suffix)
    try:
        yield tmp
        if fsync_file:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if permissions is not None:
            os.chmod(tmp, permissions)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(
    path: str | Path,
    *,
    permissions: int | None = None,
    durable: bool = False,
    suffix: str = ".tmp",
) -> Iterator[Path]:
    """Yield a temporary file's path (the file exists, empty); on success it replaces ``path``.

    ``suffix`` ends the temporary name, for writers that choose the format from it (e.g.
    ``".nii.gz"`` for ``nibabel``). ``permissions`` and ``durable``: see the module docstring.
    """
    with _replacing(path, permissions, durable, suffix, fsync_file=durable) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "wb",
    *,
    permissions: int | None = None,
    durable: bool = False,
    **open_kwargs: Any,
) -> Iterator[IO[Any]]:
    """Yield a file object open on a temporary file (``open(tmp, mode, **open_kwargs)``).

    On success the file is flushed (and fsynced when ``durable``), closed and renamed over
    ``path``. ``mode`` must write (``"w"``, ``"wb"``, ``"wt"``, ...).
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write needs a write mode ('w', 'wb', ...), got {mode!r}")
    with _replacing(path, permissions, durable, ".tmp", fsync_file=False) as tmp:
        with open(tmp, mode, **open_kwargs) as file:
            yield file
            file.flush()
            if durable:
                os.fsync(file.fileno())
