"""What a ``gleam serve`` instance is told: models, data folder, device, token and limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_UPLOAD_MB = 2048.0
DEFAULT_MAX_QUEUE = 64
DEFAULT_JOB_TIMEOUT_S = 3600.0


@dataclass
class ServeSettings:
    """Settings of one service; ``models`` maps a name to its checkpoint file.

    ``max_upload_mb``: largest request body (MiB); ``max_queue``: most jobs queued or running;
    ``job_timeout``: seconds a job may run (checked between slices); ``job_delay``: seconds
    the worker sleeps after each slice (a debugging aid: makes jobs slow on purpose).
    """

    models: dict[str, Path]
    data_dir: Path
    device: str = "auto"
    token: str | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_queue: int = DEFAULT_MAX_QUEUE
    job_timeout: float = DEFAULT_JOB_TIMEOUT_S
    job_delay: float = 0.0

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


def read_token(path: str | Path) -> str:
    """The bearer token in ``path`` (whitespace stripped); an empty file is an error."""
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--token-file {path}: cannot read it ({err})") from err
    if not token:
        raise ValueError(f"--token-file {path}: the file is empty")
    return token
