"""The job table: job records with a guarded status machine, a FIFO queue and one-hour retention.

Everything here runs on the API process's event loop thread, so no locks are needed. The store is
behind a small interface (``JobStore``) so that a shared store can replace the in-memory one.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from server.errors import QueueFull
from server.messages import FAULT_GENERATION
from server.progress import ProgressTracker


class JobStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class QueueView:
    """What a queued job's ETA needs: its place in line, how long jobs take, how many workers take them."""

    position: int | None
    average_seconds: float | None
    workers: int


# Called on the event loop thread after every change of a job: "started", "progress", "completed",
# "failed" (events, metrics, logs and webhooks listen; see server/events.py).
JobObserver = Callable[["Job", str], None]


@dataclass
class Job:
    id: str
    params: dict
    job_dir: Path
    created_at: float
    owner: str | None = None
    status: JobStatus = JobStatus.QUEUED
    image_path: Path | None = None
    # A QUEUED job is dispatched only once its image is on disk (URLs are fetched after submission).
    input_ready: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    fault: str | None = None
    output_path: Path | None = None
    # Output URLs carry this 128-bit token, not the job id, so they cannot be guessed.
    output_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    seed: int | None = None
    stage: str = "queued"
    step: int = 0
    total_steps: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Where the worker writes the video (default: job_dir/output.mp4); a shared store names one per delivery.
    output_target: Path | None = None
    # A shared store's locations of the input and the video (a shared path, or s3://bucket/key).
    input_location: str | None = None
    output_location: str | None = None
    output_size: int | None = None
    # Which delivery of the job this is (a shared store redelivers a job whose worker died).
    attempt: int = 0
    # A shared store's view of the queue around this job, read with its record.
    queue_view: QueueView | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    tracker: ProgressTracker = field(default_factory=ProgressTracker, repr=False)
    observer: JobObserver | None = field(default=None, repr=False)

    @property
    def progress(self) -> float:
        return self.tracker.progress

    def _notify(self, change: str) -> None:
        if self.observer is not None:
            self.observer(self, change)

    def report_progress(self, stage: str, step: int, total_steps: int) -> None:
        self.stage, self.step, self.total_steps = stage, step, total_steps
        self.tracker.report(stage, step, total_steps)
        self._notify("progress")

    def _move_to(self, new: JobStatus) -> None:
        if new not in ALLOWED_TRANSITIONS[self.status]:
            raise IllegalTransition(f"job {self.id}: {self.status.value} -> {new.value} is not allowed")
        self.status = new

    def start(self, now: float) -> None:
        self._move_to(JobStatus.PROCESSING)
        self.started_at = now
        self.stage = "starting"
        self._notify("started")

    def succeed(self, now: float, output_path: Path, seed: int, stage_seconds: dict[str, float]) -> None:
        self._move_to(JobStatus.COMPLETED)
        self.finished_at = now
        self.output_path = output_path
        self.seed = seed
        self.stage = "completed"
        self.stage_seconds.update(stage_seconds)
        self.tracker.finish()
        self.finished.set()
        self._notify("completed")

    def fail(self, now: float, error: str, fault: str = FAULT_GENERATION) -> None:
        self._move_to(JobStatus.FAILED)
        self.finished_at = now
        self.error = error
        self.fault = fault
        self.stage = "failed"
        self.finished.set()
        self._notify("failed")

    def metrics(self, now: float) -> dict[str, float]:
        """Segmind's metrics: seconds waiting, generating, and in all, so far or in total."""
        end = self.finished_at if self.finished_at is not None else now
        started = self.started_at if self.started_at is not None else end
        return {
            "queue_time": round(max(0.0, started - self.created_at), 3),
            "inference_time": round(max(0.0, end - started), 3) if self.started_at is not None else 0.0,
            "total_time": round(max(0.0, end - self.created_at), 3),
        }


def new_job_id() -> str:
    return str(uuid.uuid4())


class JobQueue(Protocol):
    """What a worker's supervisor needs: the next job to run, and a way to hand back the job of a
    worker that died (True when the queue will deliver it again; False: the job fails)."""

    async def next_job(self) -> Job: ...

    def release_job(self, job: Job) -> bool: ...

    def put_back(self, job: Job) -> None: ...


class JobStore(Protocol):
    """What the service needs from a job table: the in-memory one here, or server.redis_store's."""

    shared: bool  # True when other processes see the same jobs (API replicas, worker hosts)

    async def create(self, job: Job) -> None: ...

    async def find(self, job_id: str) -> Job | None: ...

    async def wait_final(self, job: Job, timeout: float) -> Job: ...

    async def depth(self) -> int: ...


class InMemoryJobStore:
    """Single-process store: a dict of jobs plus a FIFO of job ids ready for the workers."""

    shared = False

    def __init__(self, max_queue: int) -> None:
        self._jobs: dict[str, Job] = {}
        self._ready: deque[str] = deque()
        self._max_queue = max_queue
        self._ready_signal = asyncio.Event()

    def add(self, job: Job) -> None:
        if self.queued_count() >= self._max_queue:
            raise QueueFull(
                f"queue is full ({self._max_queue} jobs waiting); retry later",
                headers={"Retry-After": "5"},
            )
        self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    # The service's interface is async, so that a networked store fits it too.

    async def create(self, job: Job) -> None:
        self.add(job)

    async def find(self, job_id: str) -> Job | None:
        return self.get(job_id)

    async def wait_final(self, job: Job, timeout: float) -> Job:
        await asyncio.wait_for(job.finished.wait(), timeout)
        return job

    async def depth(self) -> int:
        return self.queued_count()

    def release_job(self, job: Job) -> bool:
        return False  # nothing else could run it: the job fails

    def mark_input_ready(self, job: Job) -> None:
        job.input_ready = True
        self._ready.append(job.id)
        self._ready_signal.set()

    async def next_job(self) -> Job:
        """The oldest job whose input is on disk and that is still QUEUED; waits for one."""
        while True:
            while self._ready:
                job = self._jobs.get(self._ready.popleft())
                if job is not None and job.status is JobStatus.QUEUED:
                    return job
            self._ready_signal.clear()
            await self._ready_signal.wait()

    def put_back(self, job: Job) -> None:
        """Return a job taken by ``next_job`` to the front of the queue: its worker stopped being
        able to run it (it died) before starting it, and the job keeps its place in line."""
        self._ready.appendleft(job.id)
        self._ready_signal.set()

    def queued_count(self) -> int:
        return sum(1 for job in self._jobs.values() if job.status is JobStatus.QUEUED)

    def remove_expired(self, now: float, ttl_seconds: float) -> list[Job]:
        """Drop finished jobs older than the TTL (the service's sweep fails the ones that never end)."""
        expired = [job for job in self._jobs.values() if job.status.is_final and now - job.created_at >= ttl_seconds]
        for job in expired:
            del self._jobs[job.id]
        return expired

    def all_jobs(self) -> list[Job]:
        return list(self._jobs.values())
