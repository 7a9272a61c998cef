"""``gleam serve``: trained networks behind an HTTP API (docs/service.md).

``settings`` (what the service is told), ``models`` (NAME=CKPT, loaded once), ``jobs`` (the
SQLite job store), ``uploads`` (multipart streamed to disk under a size limit), ``worker`` (one
thread per device runs jobs in order), ``schemas`` (the JSON bodies), ``app`` (FastAPI routes,
token, errors, metrics), ``command`` (argparse and uvicorn).
"""
