"""The one-host ``JobStore``: a dict of jobs in the API process and a FIFO for this host's worker pool, all
on the event loop thread (no locks). A job may be queued before its input is in place (a URL fetched in
the background): it is handed to a worker only once the input is stored.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

from server.clock import Clock, SystemClock
from server.errors import GenerationFailed, QueueFull
from server.jobs.events import JobEventHub
from server.jobs.progress import DurationEstimator, eta_seconds
from server.jobs.record import NO_QUEUE_VIEW, Job, JobStatus, QueueView, WorkFiles
from server.jobs.store import SHUTTING_DOWN, InputIntake, WebhookDue
from server.observability.metrics import LocalGauges
from server.storage.results import ResultStorage, SharedDirStorage
from server.workers.messages import FAULT_CANCELLED, FAULT_EXPIRED, FAULT_INPUT, FAULT_SHUTDOWN

if TYPE_CHECKING:
    from server.workers.pool import WorkerPool

log = logging.getLogger("ltx2.service")

SHUTDOWN_LINGER_SECONDS = 2.0


class InMemoryJobStore:
    def __init__(
        self, max_queue: int, results: ResultStorage | None = None, clock: Clock | None = None, ttl: float = 3600.0
    ) -> None:
        self.results = results or SharedDirStorage(Path(tempfile.gettempdir()))
        self._clock = clock or SystemClock()
        self._max_queue = max_queue
        self._ttl = ttl
        self._jobs: dict[str, Job] = {}
        self._ready: deque[str] = deque()
        self._ready_signal = asyncio.Event()
        self._input_pending: set[str] = set()
        self._webhooks: dict[str, tuple[str, str]] = {}
        self._outbox: asyncio.Queue[WebhookDue] = asyncio.Queue()
        self._events = JobEventHub()  # the service's, once attached: its streams are this store's changes
        self.durations = DurationEstimator()
        self.pool: WorkerPool | None = None
        self._guidance = ""

    def attach_pool(self, pool: WorkerPool, guidance: str = "") -> None:
        self.pool, self._guidance = pool, guidance

    async def open(self) -> None:
        if self.pool is not None:
            await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.stop()

    def all_jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def queued_count(self) -> int:
        return sum(1 for job in self._jobs.values() if job.status is JobStatus.QUEUED)

    async def create(self, job: Job, webhook: tuple[str, str] | None, intake: InputIntake) -> None:
        if self.queued_count() >= self._max_queue:
            message = f"queue is full ({self._max_queue} jobs waiting); retry later"
            raise QueueFull(message, headers={"Retry-After": "5"})
        self._jobs[job.id] = job
        self._input_pending.add(job.id)
        if webhook is not None:
            self._webhooks[job.id] = webhook
        if intake.inline is None:
            intake.fetch_later(job, lambda raw: self.store_input(job, raw))
            return
        try:
            await self.store_input(job, intake.inline)
        except OSError as exc:
            self._jobs.pop(job.id, None)
            raise GenerationFailed(f"storing the input image failed: {exc.strerror or exc}") from None

    async def store_input(self, job: Job, raw: bytes) -> None:
        # Up to --max-image-bytes: written off the event loop so polls are not held up.
        job.input = await self.results.save_input(job.id, raw)
        self._input_pending.discard(job.id)
        self._ready.append(job.id)
        self._ready_signal.set()

    async def find(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def wait_final(self, job: Job, timeout: float) -> Job:
        await asyncio.wait_for(job.finished.wait(), timeout)
        return job

    def changes(self, job: Job) -> AsyncIterator[Job | None]:
        return self._events.stream(job)

    def attach(self, events: JobEventHub) -> None:
        self._events = events
        events.add_listener(self._observe)

    def _observe(self, job: Job, change: str) -> None:
        if change == "completed":
            self.durations.add(job.metrics(self._clock.now())["inference_time"])
        if job.status.is_final and job.id in self._webhooks:
            self._outbox.put_nowait((job.id, job, *self._webhooks.pop(job.id)))

    async def cancel(self, job: Job) -> None:
        if job.status is JobStatus.QUEUED:
            job.fail(self._clock.now(), "cancelled", FAULT_CANCELLED)
        elif self.pool is not None:
            self.pool.cancel(job)  # its worker stops it

    async def depth(self) -> int:
        return self.queued_count()

    def queue_view(self, job: Job) -> QueueView:
        if job.status is not JobStatus.QUEUED:
            return NO_QUEUE_VIEW
        key = (job.created_at, job.id)
        ahead = sum(1 for o in self._jobs.values() if o.status is JobStatus.QUEUED and (o.created_at, o.id) < key)
        workers = len(self.pool.workers) if self.pool is not None else 1
        average = self.durations.average
        return QueueView(ahead + 1, average, workers, self._running_left() if average is not None else 0.0)

    def _running_left(self) -> float:
        now = self._clock.now()
        for other in self._jobs.values():
            if other.status is JobStatus.PROCESSING:
                left = eta_seconds(other.progress, now - (other.started_at or now))
                return left if left is not None else (self.durations.average or 0.0)
        return 0.0

    async def readiness(self) -> dict:
        # With several workers (--gpus), the top-level fields sum them up (ready: any worker is;
        # worker: the best state; worker_pid: the first worker's) and "workers" has each one.
        pool = self.pool
        assert pool is not None, "a store with no workers has no readiness"
        body: dict = {"ready": pool.is_ready, "worker": pool.state.value, "worker_pid": pool.worker_pid}
        body.update(worker_restarts=pool.restarts, queued=self.queued_count())
        body["workers"] = [worker.as_dict() for worker in pool.workers]
        if pool.model_description:
            body["model"] = pool.model_description
        body["guidance"] = self._guidance
        if pool.last_load_error:
            body["error"] = pool.last_load_error
        return body

    def gauges(self) -> LocalGauges:
        return LocalGauges(self, self.pool)

    async def next_job(self) -> Job:
        """The oldest job whose input is stored and that is still QUEUED; waits for one."""
        while True:
            while self._ready:
                job = self._jobs.get(self._ready.popleft())
                if job is not None and job.status is JobStatus.QUEUED:
                    try:
                        await self._prepare_files(job)
                    except Exception as exc:  # noqa: BLE001 - e.g. the input is gone: this job fails
                        job.fail(self._clock.now(), f"the input image could not be read: {exc}")
                        continue
                    return job
            self._ready_signal.clear()
            await self._ready_signal.wait()

    async def _prepare_files(self, job: Job) -> None:
        if job.input is not None:
            scratch = Path(tempfile.gettempdir())  # for storages that copy files; a directory needs none
            local = await self.results.local_input(job.id, job.input, scratch)
            job.live.files = WorkFiles(local, self.results.local_output_path(job.id, scratch))

    def put_back(self, job: Job) -> None:
        """A job taken by ``next_job`` whose worker died before starting it keeps its place in line."""
        self._ready.appendleft(job.id)
        self._ready_signal.set()

    def release_job(self, job: Job) -> bool:
        return False  # nothing else could run it: the job fails

    async def take_expired(self, now: float) -> list[str]:
        """Finished jobs older than the TTL (the sweep fails the ones that never end)."""
        expired = [job.id for job in self._jobs.values() if job.status.is_final and now - job.created_at >= self._ttl]
        for job_id in expired:
            del self._jobs[job_id]
        return expired

    async def fail_overdue(self, now: float, error: str, input_deadline: float, margin: float = 0.0) -> int:
        failed = 0
        for job in list(self._jobs.values()):
            if job.status is not JobStatus.QUEUED:
                continue  # a running job is bounded by --job-timeout
            age = now - job.created_at
            if age >= self._ttl:
                log.warning("job %s: still queued one TTL after submission; failing it", job.id)
                job.fail(now, error, FAULT_EXPIRED)
            elif job.id in self._input_pending and age >= input_deadline + margin:
                log.warning("job %s: its input never became ready; failing it", job.id)
                job.fail(now, f"image: not ready within {input_deadline:g} s of submission", FAULT_INPUT)
            else:
                continue
            failed += 1
        return failed

    async def webhooks_due(self, consumer: str, block: float = 1.0) -> list[WebhookDue]:
        try:
            due = [await asyncio.wait_for(self._outbox.get(), block)]
        except asyncio.TimeoutError:
            return []
        while not self._outbox.empty():
            due.append(self._outbox.get_nowait())
        return due

    async def webhook_sent(self, entry_id: str) -> None:
        return None

    async def drain(self, grace: float, reason: str = SHUTTING_DOWN) -> None:
        for job in self.all_jobs():
            if job.status is JobStatus.QUEUED:
                error = f"{reason}: this job never started; submit it again later"
                job.fail(self._clock.now(), error, FAULT_SHUTDOWN)
        running = [job for job in self.all_jobs() if job.status is JobStatus.PROCESSING]
        log.info("shutting down: refusing new jobs, waiting up to %g s for %d running", grace, len(running))
        if running:
            waits = [asyncio.ensure_future(job.finished.wait()) for job in running]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for waiter in pending:
                waiter.cancel()
        for job in (job for job in running if not job.status.is_final):
            if grace > 0:
                log.warning("job %s did not finish within the %g s shutdown grace period; failing it", job.id, grace)
                error = f"{reason}: this job did not finish within the {grace:g} s grace period"
            else:
                log.warning("job %s stopped unfinished: %s", job.id, reason)
                error = f"{reason}: this job was stopped before it finished; submit it again later"
            job.fail(self._clock.now(), error, FAULT_SHUTDOWN)
        if running:
            # Pollers of those jobs get a moment to read how they ended before the listener closes.
            await asyncio.sleep(SHUTDOWN_LINGER_SECONDS)
