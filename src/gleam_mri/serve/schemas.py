"""The JSON bodies of the API (docs/service.md), as pydantic models for the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel

from gleam_mri.serve.jobs import Job as StoredJob


class Error(BaseModel):
    """Every error body: one human-readable string."""

    detail: str


class Health(BaseModel):
    status: str


class Model(BaseModel):
    name: str
    kind: str
    model: str
    strategy: str
    iterations: int
    acceleration: float | None
    device: str
    engine: str = "torch"  # or "onnx": ONNX Runtime (a gleam export model, or --engine onnx)


class ModelList(BaseModel):
    models: list[Model]


class Progress(BaseModel):
    done: int
    total: int


class Timings(BaseModel):
    queued_s: float
    running_s: float


class Job(BaseModel):
    id: str
    state: str
    model: str
    file_name: str
    formats: list[str]
    undersample: bool
    progress: Progress
    created_at: str
    started_at: str | None
    finished_at: str | None
    timings: Timings
    error: str | None


def iso(t: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC string."""
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def job_body(job: StoredJob, now: float) -> Job:
    """The ``Job`` body of a stored job; timings run on until the job starts / ends (``running_s``
    is 0 until it starts)."""
    queued = (job.started_at if job.started_at is not None else now) - job.created_at
    running = 0.0
    if job.started_at is not None:
        running = (job.finished_at if job.finished_at is not None else now) - job.started_at
    return Job(
        id=job.id,
        state=job.state,
        model=job.model,
        file_name=job.file_name,
        formats=job.formats,
        undersample=job.undersample,
        progress=Progress(done=job.done, total=job.total),
        created_at=iso(job.created_at),
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        timings=Timings(queued_s=max(queued, 0.0), running_s=running),
        error=job.error,
    )
