"""``gleam serve``: argparse front end; checks the models and token, then runs uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gleam_mri.serve.settings import (
    DEFAULT_JOB_TIMEOUT_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    ServeSettings,
    read_token,
)

DESCRIPTION = """\
Serve trained checkpoints over HTTP (docs/service.md): POST a raw file (fastMRI or ISMRMRD
HDF5, Siemens twix, BART CFL+HDR) to /v1/reconstructions, poll the job, download the
reconstruction as HDF5, NIfTI, PNG or a zip of the DICOM series: the outputs of gleam recon.
Jobs and results persist under --data-dir (SQLite and files): a service stopped and started
again loses no accepted job. The OpenAPI description is at /openapi.json, Prometheus metrics at
/metrics. With --token-file, every route but /healthz needs 'Authorization: Bearer TOKEN'."""


def add_parser(sub: Any) -> None:
    """Register ``gleam serve`` on the sub-command parsers."""
    p = sub.add_parser(
        "serve",
        help="serve trained checkpoints over HTTP (reconstruction jobs, OpenAPI, metrics)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        required=True,
        metavar="NAME=CKPT",
        help="a checkpoint written by gleam train (or adapt), or a .onnx written by gleam "
        "export, and its name (repeatable)",
    )
    p.add_argument(
        "--engine",
        choices=("torch", "onnx"),
        default=None,
        help="torch: PyTorch; onnx: ONNX Runtime, checkpoints exported into DATA_DIR/onnx/ at "
        "start (default: onnx for .onnx models, else torch)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--token-file", type=Path, default=None, help="file holding the bearer token clients send"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("runs/serve"),
        help="jobs database, uploads and results (default: runs/serve)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help="largest request body in MiB (413 beyond)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help="most jobs queued or running (429 beyond)",
    )
    p.add_argument(
        "--job-timeout",
        type=float,
        default=DEFAULT_JOB_TIMEOUT_S,
        help="seconds a job may run before it fails (checked between slices)",
    )
    p.add_argument("--job-delay", type=float, default=0.0, help=argparse.SUPPRESS)  # debugging
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.set_defaults(func=run_serve)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Checked settings (model names and files, token file, limits) from the parsed options."""
    from gleam_mri.serve.models import parse_model_specs

    if args.max_upload_mb <= 0 or args.max_queue < 1 or args.job_timeout <= 0:
        raise ValueError("--max-upload-mb and --job-timeout must be > 0, --max-queue >= 1")
    if args.job_delay < 0:
        raise ValueError("--job-delay must be >= 0")
    return ServeSettings(
        models=parse_model_specs(args.model),
        data_dir=args.data_dir,
        device=args.device,
        token=None if args.token_file is None else read_token(args.token_file),
        max_upload_mb=args.max_upload_mb,
        max_queue=args.max_queue,
        job_timeout=args.job_timeout,
        job_delay=args.job_delay,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Load the models (errors name the file, before anything listens), then serve."""
    import uvicorn

    from gleam_mri.serve.app import create_app
    from gleam_mri.serve.models import load_models

    settings = settings_from_args(args)
    models = load_models(settings.models, settings.device, args.engine, settings.data_dir / "onnx")
    app = create_app(settings, models)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
