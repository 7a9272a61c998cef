"""``gleam serve``: trained networks behind an HTTP API (docs/service.md).

``settings`` (what the service is told), ``models`` (NAME=CKPT, loaded once), ``jobs`` (the
SQLite job store), ``uploads`` (multipart streamed to disk under a size limit), ``submit`` (form
fields -> job), ``quarantine`` (each upload read first in a child process), ``worker`` (one
thread per device runs jobs in order), ``schemas`` (the JSON bodies), ``metrics`` (Prometheus),
``app`` (FastAPI routes, token, errors), ``command`` (argparse and uvicorn).

The public names below are loaded on first use, so that the quarantine child
(``python -m gleam_mri.serve.quarantine``) imports neither FastAPI nor torch.
"""

from __future__ import annotations

from gleam_mri.lazy import lazy_names

_PUBLIC = {  # name -> the module of this package that defines it
    "ServeSettings": "settings",
    "LoadedModel": "models",
    "Job": "jobs",
    "JobStore": "jobs",
    "Worker": "worker",
    "create_app": "app",
}

__all__ = sorted(_PUBLIC)

__getattr__ = lazy_names(__name__, _PUBLIC)
