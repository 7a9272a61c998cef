"""The job store: one SQLite table (stdlib ``sqlite3``) under the data folder.

Every change is committed at once, so a service killed at any moment loses no accepted job;
:meth:`JobStore.requeue_running` at start puts the jobs that were running back in the queue.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    file_name TEXT NOT NULL,
    input_name TEXT NOT NULL,
    stem TEXT NOT NULL,
    formats TEXT NOT NULL,
    undersample INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT
)
"""


@dataclass
class Job:
    """One reconstruction request; times are seconds since the epoch."""

    id: str
    state: str
    model: str
    file_name: str
    input_name: str  # the stored upload's name inside the job folder
    stem: str  # outputs are named after it
    formats: list[str]
    undersample: bool
    done: int = 0
    total: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


def new_job_id() -> str:
    """A fresh job id (32 hex digits)."""
    return uuid.uuid4().hex


class JobStore:
    """Jobs in ``path`` (SQLite), safe to use from the web threads and the workers at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _row(self, row: sqlite3.Row | None) -> Job | None:
        if row is None:
            return None
        values = dict(row)
        values.pop("seq")
        values["formats"] = json.loads(values["formats"])
        values["undersample"] = bool(values["undersample"])
        return Job(**values)

    def create(self, job: Job, max_active: int | None = None) -> bool:
        """Insert a queued job; ``False`` (nothing inserted) when ``max_active`` jobs are already
        queued or running."""
        with self._lock:
            if max_active is not None:
                (active,) = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
                ).fetchone()
                if active >= max_active:
                    return False
            self._db.execute(
                "INSERT INTO jobs (id, state, model, file_name, input_name, stem, formats, "
                "undersample, created_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.model,
                    job.file_name,
                    job.input_name,
                    job.stem,
                    json.dumps(job.formats),
                    int(job.undersample),
                    job.created_at or time.time(),
                ),
            )
        return True

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id``, ``None`` when there is none."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row)

    def list(self) -> list[Job]:
        """Every job, in submission order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: n for state, n in rows})
        return counts

    def claim_next(self, models: list[str]) -> Job | None:
        """The oldest queued job of one of ``models``, now marked running; ``None`` if none."""
        marks = ",".join("?" * len(models))
        with self._lock:
            row = self._db.execute(
                f"SELECT * FROM jobs WHERE state = 'queued' AND model IN ({marks}) "
                "ORDER BY seq LIMIT 1",
                models,
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            self._db.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, done = 0, total = 0 "
                "WHERE id = ?",
                (now, row["id"]),
            )
        job = self._row(row)
        job.state, job.started_at, job.done, job.total = "running", now, 0, 0
        return job

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        """Record ``done`` of ``total`` slices."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET done = ?, total = ? WHERE id = ?", (done, total, job_id)
            )

    def finish(self, job_id: str, state: str, error: str | None = None) -> bool:
        """Mark a running job ``done`` or ``failed``; ``False`` when it was deleted meanwhile."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                (state, error, time.time(), job_id),
            )
        return cursor.rowcount > 0

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue (the service is stopping)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = 'queued', started_at = NULL, done = 0, total = 0 "
                "WHERE id = ? AND state = 'running'",
                (job_id,),
            )

    def requeue_running(self) -> int:
        """At start: jobs left ``running`` by a stopped service go back to ``queued``."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = 'queued', started_at = NULL, done = 0, total = 0 "
                "WHERE state = 'running'"
            )
        return cursor.rowcount

    def delete(self, job_id: str) -> bool:
        """Remove a job; ``False`` when there was none."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return cursor.rowcount > 0
