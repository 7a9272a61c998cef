"""Prometheus metrics of one service (its own registry): jobs by state, queue length,
reconstruction seconds, jobs submitted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gleam_mri.serve.jobs import JobStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ServiceMetrics:
    """The service's metrics; the job gauges are read from the store at each scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.jobs = Gauge("gleam_jobs", "Jobs by state", ["state"], registry=self.registry)
        self.queue = Gauge("gleam_queue_length", "Jobs queued", registry=self.registry)
        self.seconds = Histogram(
            "gleam_reconstruction_seconds",
            "Running time of finished (done or failed) jobs",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "gleam_jobs_submitted",
            "Jobs accepted since the service started",
            registry=self.registry,
        )

    def finished(self, state: str, seconds: float) -> None:
        """A job ended (``done`` or ``failed``) after running ``seconds``."""
        self.seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        counts = self.store.counts()
        for state, n in counts.items():
            self.jobs.labels(state=state).set(n)
        self.queue.set(counts["queued"])
        return generate_latest(self.registry)
