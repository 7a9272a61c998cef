"""The FastAPI application of ``gleam serve``: routes, bearer token, errors, metrics.

:func:`create_app` builds it from :class:`~gleam_mri.serve.settings.ServeSettings` (and the
models, loaded once); its lifespan requeues the jobs a stopped service left running and runs one
worker thread per device.
"""

from __future__ import annotations

import hmac
import logging
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from gleam_mri import __version__
from gleam_mri.inference import OUTPUT_FORMATS
from gleam_mri.serve import schemas
from gleam_mri.serve.jobs import JobStore, new_job_id
from gleam_mri.serve.metrics import CONTENT_TYPE, ServiceMetrics
from gleam_mri.serve.models import LoadedModel, load_models
from gleam_mri.serve.settings import ServeSettings
from gleam_mri.serve.submit import UPLOAD_BODY, job_from_upload
from gleam_mri.serve.uploads import UploadError, receive_upload
from gleam_mri.serve.worker import Worker, job_folder, result_path

log = logging.getLogger("gleam.serve")

MEDIA_TYPES = {
    "h5": "application/x-hdf5",
    "nii": "application/gzip",
    "png": "image/png",
    "dcm": "application/zip",
}
ERRORS = {code: {"model": schemas.Error} for code in (400, 401, 404, 409, 413, 429)}


BEARER = HTTPBearer(auto_error=False, description="the content of --token-file")


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """401 unless the request carries the service's bearer token (when it has one)."""
    token = request.app.state.settings.token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, token.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in (401, *codes)}


def _flatten(err: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line."""
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def _openapi_with_error_bodies(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema with validation errors (422) documented as ``Error`` bodies."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in schema.get("paths", {}).values():
            for op in operations.values():
                if "422" in op.get("responses", {}):
                    op["responses"]["422"] = {
                        "description": "Validation Error",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: ServeSettings, models: dict[str, LoadedModel] | None = None) -> FastAPI:
    """The service's FastAPI app (``models`` are loaded from ``settings`` when not given)."""
    models = load_models(settings.models, settings.device) if models is None else models
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(data_dir / "jobs.sqlite")
    metrics = ServiceMetrics(store)
    by_device: dict[str, dict[str, LoadedModel]] = {}
    for name, m in models.items():
        by_device.setdefault(str(m.run.device), {})[name] = m
    workers = [
        Worker(store, ms, data_dir, settings.job_timeout, settings.job_delay, metrics.finished)
        for ms in by_device.values()
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        shutil.rmtree(data_dir / "tmp", ignore_errors=True)  # uploads cut off by a stop
        requeued = store.requeue_running()
        if requeued:
            log.info("%d job(s) left running by a stopped service are queued again", requeued)
        for job in store.list():
            if job.state == "queued" and job.model not in models:
                store.finish(job.id, "failed", f"the model {job.model!r} is no longer loaded")
        for w in workers:
            w.start()
        yield
        for w in workers:
            w.stop()  # the store stays open: the app may be started again (tests)

    app = FastAPI(
        title="gleam-mri reconstruction service",
        version=__version__,
        description="Reconstruct raw MRI files with trained unrolled networks (docs/service.md).",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store, app.state.workers, app.state.models = store, workers, models
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _flatten(err)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 204:
            return Response(status_code=204)
        return JSONResponse({"detail": str(err.detail)}, err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, 500)

    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    def healthz() -> schemas.Health:
        """Liveness (no token needed)."""
        return schemas.Health(status="ok")

    api = APIRouter(dependencies=[Depends(require_token)])

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(_openapi_with_error_bodies(app))

    @api.get("/metrics", tags=["service"], responses=_errors())
    def prometheus() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @api.get("/v1/models", response_model=schemas.ModelList, tags=["models"], responses=_errors())
    def list_models() -> schemas.ModelList:
        """The networks this service offers."""
        return schemas.ModelList(models=[schemas.Model(**m.describe()) for m in models.values()])

    @api.post(
        "/v1/reconstructions",
        status_code=202,
        response_model=schemas.Job,
        tags=["reconstructions"],
        responses=_errors(400, 413, 429),
        openapi_extra=UPLOAD_BODY,
    )
    async def submit(request: Request, response: Response) -> schemas.Job:
        """Upload a raw file and queue its reconstruction."""
        full = f"the queue is full ({settings.max_queue} jobs queued or running); retry later"
        counts = store.counts()
        if counts["queued"] + counts["running"] >= settings.max_queue:
            raise HTTPException(429, full)
        job_id = new_job_id()
        tmp = data_dir / "tmp" / job_id
        try:
            upload = await receive_upload(request, tmp, settings.max_upload_bytes)
            job = job_from_upload(job_id, upload, list(models))
        except UploadError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HTTPException(err.status, err.detail) from None
        folder = job_folder(data_dir, job_id)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(folder)
        if not store.create(job, settings.max_queue):
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(429, full)
        metrics.submitted.inc()
        for w in workers:
            w.wake()
        response.headers["Location"] = f"/v1/reconstructions/{job_id}"
        return schemas.job_body(store.get(job_id), time.time())

    def _job(job_id: str):
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    @api.get(
        "/v1/reconstructions/{job_id}",
        response_model=schemas.Job,
        tags=["reconstructions"],
        responses=_errors(404),
    )
    def get_job(job_id: str) -> schemas.Job:
        """A job's state, progress, timings and error."""
        return schemas.job_body(_job(job_id), time.time())

    @api.get(
        "/v1/reconstructions/{job_id}/result",
        tags=["reconstructions"],
        response_class=FileResponse,
        responses={
            200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "the file"},
            **_errors(400, 404, 409),
        },
    )
    def get_result(
        job_id: str,
        format: str | None = Query(None, description="h5, nii, png or dcm (default: the first)"),
    ) -> FileResponse:
        """Download a result of a finished job."""
        job = _job(job_id)
        fmt = job.formats[0] if format is None else format
        if fmt not in OUTPUT_FORMATS:
            raise HTTPException(400, f"unknown format {fmt!r}; valid: {list(OUTPUT_FORMATS)}")
        if fmt not in job.formats:
            raise HTTPException(400, f"job {job_id} did not ask for {fmt!r}: {job.formats}")
        if job.state == "failed":
            raise HTTPException(409, f"job {job_id} failed: {job.error}")
        if job.state != "done":
            raise HTTPException(409, f"job {job_id} is {job.state}: no result yet")
        path = result_path(data_dir, job, fmt)
        if not path.is_file():
            raise HTTPException(404, f"the {fmt} result of job {job_id} is missing on the server")
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=path.name)

    @api.delete(
        "/v1/reconstructions/{job_id}",
        status_code=204,
        response_class=Response,
        tags=["reconstructions"],
        responses=_errors(404),
    )
    def delete_job(job_id: str) -> Response:
        """Delete a job and its files (a running job is cancelled)."""
        job = _job(job_id)
        if job.state == "running":
            for w in workers:
                if job.model in w.models:
                    w.cancel(job_id)
        store.delete(job_id)
        shutil.rmtree(job_folder(data_dir, job_id), ignore_errors=True)
        return Response(status_code=204)

    app.include_router(api)
    return app
