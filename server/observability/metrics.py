"""Prometheus metrics for ``/metrics``: one registry per app, fed by job events and read live from
the job table and the supervisor at scrape time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pipelines.moderation import blocked_where  # torch-free: reads a "content blocked: ..." error
from server.clock import Clock
from server.jobs.record import Job, JobStatus
from server.jobs.store import Gauges
from server.workers.messages import FAULT_CONTENT

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: a tiny job takes well under one, the real model up to half an hour.
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)


def _one(family: type, name: str, text: str, value: float):
    metric = family(name, text)
    metric.add_metric([], value)
    return metric


class LocalGauges:
    """What is read, not counted, of a one-host store: queue depth, running jobs, the workers."""

    def __init__(self, store, supervisor) -> None:
        self._store = store
        self._supervisor = supervisor

    async def refresh(self) -> None:
        return None  # read live at each scrape

    def collect(self):
        jobs = self._store.all_jobs()
        queued = sum(1 for job in jobs if job.status is JobStatus.QUEUED)
        yield _one(GaugeMetricFamily, "ltx2_queue_depth", "Jobs waiting for the worker", queued)
        running = sum(1 for job in jobs if job.status is JobStatus.PROCESSING)
        yield _one(GaugeMetricFamily, "ltx2_jobs_processing", "Jobs being generated now", running)
        text = "Times a worker process was restarted, all workers"
        yield _one(CounterMetricFamily, "ltx2_worker_restarts", text, self._supervisor.restarts)
        ready = 1 if self._supervisor.is_ready else 0
        yield _one(GaugeMetricFamily, "ltx2_worker_ready", "1 when a worker has loaded the model and takes jobs", ready)
        yield from self._per_worker()
        peak = getattr(self._supervisor, "last_gpu_peak_bytes", 0)
        if peak:
            text = "Peak CUDA memory allocated by the worker during the last job"
            yield _one(GaugeMetricFamily, "ltx2_gpu_peak_memory_bytes", text, peak)

    def _per_worker(self):
        """One series per worker, labelled by its index and device. Under names of their own: mixed
        into the unlabelled totals above, a sum() over a family would count every worker twice."""
        labels = ["worker", "device"]
        ready = GaugeMetricFamily("ltx2_pool_worker_ready", "1 when this worker has loaded the model", labels=labels)
        busy = GaugeMetricFamily("ltx2_pool_worker_busy", "1 while this worker generates a job", labels=labels)
        restarts = CounterMetricFamily(
            "ltx2_pool_worker_restarts", "Times this worker's process was restarted", labels=labels
        )
        for worker in self._supervisor.workers:
            values = [str(worker.index), worker.device]
            ready.add_metric(values, 1 if worker.state in ("ready", "busy") else 0)
            busy.add_metric(values, 1 if worker.state == "busy" else 0)
            restarts.add_metric(values, worker.restarts)
        yield from (ready, busy, restarts)


class SharedStoreGauges:
    """The same gauges for an API replica of a shared store, read from Redis before each scrape."""

    def __init__(self, store, clock: Clock, stale_after: float) -> None:
        self._store = store
        self._clock = clock
        self._stale_after = stale_after
        self._depth = 0
        self._workers: list[dict] = []

    async def refresh(self) -> None:
        try:
            self._depth = await self._store.depth()
            self._workers = await self._store.live_workers(self._clock.now(), self._stale_after)
        except Exception:  # noqa: BLE001 - an unreachable store shows as no workers, not a failed scrape
            self._workers = []

    def collect(self):
        yield _one(GaugeMetricFamily, "ltx2_queue_depth", "Jobs waiting for a worker", self._depth)
        running = sum(1 for worker in self._workers if worker.get("state") == "busy")
        yield _one(GaugeMetricFamily, "ltx2_jobs_processing", "Jobs being generated now", running)
        labels = ["worker", "device"]
        ready = GaugeMetricFamily(
            "ltx2_worker_ready", "1 when the worker has loaded the model and takes jobs", labels=labels
        )
        restarts = CounterMetricFamily("ltx2_worker_restarts", "Times the worker process was restarted", labels=labels)
        for worker in self._workers:
            labels = [str(worker.get("name", "")), str(worker.get("device", ""))]
            ready.add_metric(labels, 1 if worker.get("state") in ("ready", "busy") else 0)
            restarts.add_metric(labels, worker.get("restarts", 0))
        yield ready
        yield restarts


class ServerMetrics:
    def __init__(self, gauges: Gauges, clock: Clock) -> None:
        self._clock = clock
        self._gauges = gauges
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counter("ltx2_jobs_submitted", "Jobs accepted by POST /v1 or /v2", registry=registry)
        self.finished = Counter("ltx2_jobs_finished", "Jobs that reached a final state", ["state"], registry=registry)
        for state in (JobStatus.COMPLETED, JobStatus.FAILED):
            self.finished.labels(state=state.value.lower())
        self.content_blocked = Counter(
            "ltx2_content_blocked", "Jobs the content policy (--moderation) refused, by what it refused",
            ["where"], registry=registry,
        )  # fmt: skip
        for where in ("prompt", "input", "output"):
            self.content_blocked.labels(where=where)
        self.queue_seconds = Histogram(
            "ltx2_job_queue_seconds", "Seconds from submission to the worker taking the job",
            buckets=QUEUE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.generation_seconds = Histogram(
            "ltx2_job_generation_seconds", "Seconds the worker spent on a job, until it completed or failed",
            buckets=GENERATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(gauges)

    async def refresh(self) -> None:
        await self._gauges.refresh()

    def on_job_change(self, job: Job, change: str) -> None:
        if change == "queued":
            self.submitted.inc()
        elif change == "started":
            self.queue_seconds.observe(job.metrics(self._clock.now())["queue_time"])
        elif change in ("completed", "failed"):
            self.finished.labels(state=change).inc()
            if change == "failed" and job.fault == FAULT_CONTENT:
                self.content_blocked.labels(where=blocked_where(job.error or "")).inc()
            if job.started_at is not None:
                self.generation_seconds.observe(job.metrics(self._clock.now())["inference_time"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
