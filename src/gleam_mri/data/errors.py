"""Errors of the data layer; each message names the file (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path


class FastMRIFormatError(ValueError):
    """A file in the fastMRI layout (or an array written to one) is missing, corrupt or malformed.

    ``path`` is the offending file (``None`` for in-memory input such as a header string).
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class FastMRIFileNotFoundError(FastMRIFormatError, FileNotFoundError):
    """The file does not exist (also a :class:`FileNotFoundError`)."""


class DatasetError(ValueError):
    """A data set cannot be built: no files, files of the wrong kind, bad options."""
