"""The job: its stored record with a guarded status machine (``Job._move_to``, called by ``start``,
``succeed`` and ``fail``: the one place a status changes), and its live local-only state (``JobLive``).
Where jobs live: server/jobs/store.py.
"""

from __future__ import annotations

import asyncio
import enum
import math
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.interface import JobSpec
from server.jobs.progress import ProgressTracker, eta_seconds
from server.workers.messages import FAULT_GENERATION


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
    """What a queued job's ETA needs: its place in line, how long jobs take, how many workers take
    them, and how long the running job has left (0 when unknown)."""

    position: int | None
    average_seconds: float | None
    workers: int
    running_seconds_left: float = 0.0


NO_QUEUE_VIEW = QueueView(None, None, 1)

# Called on the event loop thread after every change of a job: "started", "progress", "completed",
# "failed" (events, metrics, logs and webhooks listen; see server/jobs/events.py).
JobObserver = Callable[["Job", str], None]


@dataclass(frozen=True)
class WorkFiles:
    """Where a worker reads a job's input and writes its video: local files of this host."""

    input: Path
    output: Path


@dataclass
class JobLive:
    """What only this process knows of a job, never stored: who listens, whether it ended, the
    progress estimator, a worker's local files, and a shared store's queue view read with the record."""

    finished: asyncio.Event = field(default_factory=asyncio.Event)
    tracker: ProgressTracker = field(default_factory=ProgressTracker)
    observer: JobObserver | None = None
    files: WorkFiles | None = None
    queue_view: QueueView | None = None


@dataclass
class Job:
    """The stored record; its status changes only through start/succeed/fail."""

    id: str
    params: JobSpec
    created_at: float
    owner: str | None = None
    status: JobStatus = JobStatus.QUEUED
    # Where the input image and the video are stored: a location of the ResultStorage (server/storage/results.py).
    input: str | None = None
    output: str | None = None
    output_size: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    fault: str | None = None
    # Output URLs carry this 128-bit token, not the job id, so they cannot be guessed.
    output_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    seed: int | None = None
    # The rewritten prompt, when the request asked for enhance_prompt and the job completed.
    enhanced_prompt: str | None = None
    stage: str = "queued"
    step: int = 0
    total_steps: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Which delivery of the job this is (a shared store redelivers a job whose worker died).
    attempt: int = 0
    live: JobLive = field(default_factory=JobLive, repr=False, compare=False)

    @property
    def progress(self) -> float:
        return self.live.tracker.progress

    @property
    def finished(self) -> asyncio.Event:
        return self.live.finished

    def _notify(self, change: str) -> None:
        if self.live.observer is not None:
            self.live.observer(self, change)

    def report_progress(self, stage: str, step: int, total_steps: int) -> None:
        self.stage, self.step, self.total_steps = stage, step, total_steps
        self.live.tracker.report(stage, step, total_steps)
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

    def succeed(
        self, now: float, output: Path | str, seed: int, stage_seconds: dict[str, float],
        enhanced_prompt: str | None = None,
    ) -> None:  # fmt: skip
        self._move_to(JobStatus.COMPLETED)
        self.finished_at = now
        self.output = str(output)
        self.seed = seed
        self.enhanced_prompt = enhanced_prompt
        self.stage = "completed"
        self.stage_seconds.update(stage_seconds)
        self.live.tracker.finish()
        self.live.finished.set()
        self._notify("completed")

    def fail(self, now: float, error: str, fault: str = FAULT_GENERATION) -> None:
        self._move_to(JobStatus.FAILED)
        self.finished_at = now
        self.error = error
        self.fault = fault
        self.stage = "failed"
        self.live.finished.set()
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

    def progress_fields(self, view: QueueView, now: float) -> dict:
        """The fields this server adds to Segmind's status body: progress, stage, steps, queue, ETA."""
        position = view.position if self.status is JobStatus.QUEUED else None
        if self.status is JobStatus.PROCESSING:
            eta = eta_seconds(self.progress, now - (self.started_at or now))
        elif position is not None and view.average_seconds is not None:
            # Jobs ahead leave in rounds, one per worker: this one ends after ceil(position / workers)
            # generations, the first of them the wait for a running job to end.
            rounds = math.ceil(position / max(1, view.workers))
            eta = round(view.average_seconds * rounds + view.running_seconds_left, 1)
        else:
            eta = 0.0 if self.status.is_final else None
        return {
            "progress": round(self.progress, 4),
            "stage": "queued" if self.status is JobStatus.QUEUED else self.stage,
            "step": self.step,
            "total_steps": self.total_steps,
            "queue_position": position,
            "eta_seconds": eta,
        }


def new_job_id() -> str:
    return str(uuid.uuid4())
