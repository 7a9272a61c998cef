"""Worker threads: one per device, each runs its models' jobs one at a time in submission order.

A job runs :func:`gleam_mri.inference.reconstruct_with_run` (what ``gleam recon`` runs) with the
model loaded at start; between slices the progress callback records ``done / total``, and stops
the job when it was deleted (cancelled), ran past the time limit, or the service is stopping (the
job then goes back to the queue). Before that, the upload is read in a child process
(:mod:`gleam_mri.serve.quarantine`): a file that crashes or hangs the readers fails its job, not
the service.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from gleam_mri.atomic import atomic_path
from gleam_mri.inference import reconstruct_with_run
from gleam_mri.serve.jobs import Job, JobStore
from gleam_mri.serve.models import LoadedModel
from gleam_mri.serve.quarantine import read_in_child

log = logging.getLogger("gleam.serve")

RESULT_NAMES = {
    "h5": "{stem}.h5",
    "nii": "{stem}.nii.gz",
    "png": "{stem}.png",
    "dcm": "{stem}_dicom.zip",
}


class JobCancelled(Exception):
    """The job was deleted while it ran."""


class JobInterrupted(Exception):
    """The service is stopping: the job goes back to the queue."""


class JobTimeout(Exception):
    """The job ran longer than the service's time limit."""


def job_folder(data_dir: Path, job_id: str) -> Path:
    """Where a job's upload (``input*``) and results (``out/``) live."""
    return data_dir / "jobs" / job_id


def result_path(data_dir: Path, job: Job, fmt: str) -> Path:
    """The result file of ``job`` in format ``fmt`` (``h5``, ``nii``, ``png``, ``dcm``)."""
    return job_folder(data_dir, job.id) / "out" / RESULT_NAMES[fmt].format(stem=job.stem)


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip the files of ``folder`` (flat) into ``target`` (atomically and durably: a reader sees
    the whole archive or none) and remove the folder."""
    with atomic_path(target, durable=True) as partial:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, path.name)
    shutil.rmtree(folder)
    return target


def link_under_client_name(folder: Path, job: Job) -> Path:
    """The stored upload (and a BART header) linked as ``run/<stem><suffix>``: masks are seeded
    by the file name, so the reconstruction equals ``gleam recon``'s of a file of that name."""
    run = folder / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    suffix = Path(job.input_name).suffix
    pairs = [(job.input_name, f"{job.stem}{suffix}")]
    if suffix == ".cfl":
        pairs.append(("input.hdr", f"{job.stem}.hdr"))
    for stored, name in pairs:
        try:
            os.link(folder / stored, run / name)
        except OSError:  # no hard links on this file system
            shutil.copyfile(folder / stored, run / name)
    return run / pairs[0][1]


class Worker:
    """A thread running the queued jobs of ``models`` (all on one device), oldest first."""

    def __init__(
        self,
        store: JobStore,
        models: dict[str, LoadedModel],
        data_dir: Path,
        job_timeout: float,
        job_delay: float = 0.0,
        on_finished: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store, self.models, self.data_dir = store, models, Path(data_dir)
        self.job_timeout, self.job_delay = job_timeout, job_delay
        self.on_finished = on_finished
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="gleam-serve-worker", daemon=True)

    def start(self) -> None:
        """Start the thread (again, after :meth:`stop`)."""
        if self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="gleam-serve-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current slice (a running job goes back to the queue) and join."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        """A job was queued."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id`` at its next slice if it is running here."""
        with self._lock:
            self._cancelled.add(job_id)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.store.claim_next(list(self.models))
            except Exception:  # a broken database: keep the thread, try again
                log.exception("cannot read the job store")
                job = None
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.run_job(job)
            except Exception:
                log.exception("job %s: unexpected error in the worker", job.id)

    def _check(self, job: Job) -> None:
        """Raise when ``job`` was cancelled or the service is stopping."""
        with self._lock:
            if job.id in self._cancelled:
                raise JobCancelled(job.id)
        if self._stopping.is_set():
            raise JobInterrupted(job.id)

    def _progress(self, job: Job, deadline: float) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            self.store.set_progress(job.id, done, total)
            if self.job_delay > 0 and done < total:
                self._stopping.wait(self.job_delay)  # debugging aid: slow jobs on purpose
            self._check(job)
            if time.monotonic() > deadline:
                raise JobTimeout(
                    f"the job ran longer than the service's limit of {self.job_timeout:g} s "
                    f"(--job-timeout); stopped after {done} of {total} slices"
                )

        return progress

    def run_job(self, job: Job) -> None:
        """Reconstruct ``job`` (already marked running) and record its end."""
        folder = job_folder(self.data_dir, job.id)
        out = folder / "out"
        shutil.rmtree(out, ignore_errors=True)  # a rerun after a restart starts clean
        started = time.monotonic()
        state, error = "done", None
        source = folder / job.input_name
        try:
            source = link_under_client_name(folder, job)
            converted = folder / "run" / "converted" / f"{job.stem}.h5"
            converted.parent.mkdir()
            deadline = started + self.job_timeout
            readable = read_in_child(source, converted, deadline, lambda: self._check(job))
            reconstruct_with_run(
                self.models[job.model].run,
                readable,
                out,
                formats=tuple(job.formats),
                undersample=job.undersample,
                progress=self._progress(job, started + self.job_timeout),
                stem=job.stem,
                engine=self.models[job.model].engine,
            )
            if "dcm" in job.formats:
                zip_folder(out / f"{job.stem}_dicom", result_path(self.data_dir, job, "dcm"))
        except JobCancelled:
            shutil.rmtree(folder, ignore_errors=True)
            return
        except JobInterrupted:
            self.store.requeue(job.id)
            return
        except Exception as err:  # the reader's or the network's message
            state, error = "failed", _message(err, source, job.file_name)
        finally:
            with self._lock:
                self._cancelled.discard(job.id)
            shutil.rmtree(folder / "run", ignore_errors=True)
        seconds = time.monotonic() - started
        if not self.store.finish(job.id, state, error):  # deleted meanwhile
            shutil.rmtree(folder, ignore_errors=True)
            return
        log.info("job %s %s in %.2f s%s", job.id, state, seconds, f": {error}" if error else "")
        if self.on_finished is not None:
            self.on_finished(state, seconds)


def _message(err: Exception, stored: Path, client_name: str) -> str:
    """One line for a failed job, naming the client's file rather than the stored one."""
    text = str(err) or type(err).__name__
    for path in (stored, stored.with_suffix("")):
        text = text.replace(str(path), client_name)
    return " ".join(text.split())
