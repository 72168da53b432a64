"""The ``JobStore`` interface the service uses, with two implementations: ``server.jobs.memory_store``
(one host) and ``server.jobs.redis_store`` (API replicas and worker hosts); the store contract tests run both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol

from server.jobs.record import Job, QueueView
from server.storage.results import ResultStorage

# The start of the error of a job a shutdown ended (the SIGINT drain gives its own reason).
SHUTTING_DOWN = "the server is shutting down"


class JobQueue(Protocol):
    """What a worker's supervisor needs: the next job to run (its ``live.files`` set), and a way to
    hand back the job of a worker that died (True when the queue will deliver it again; False: the job fails)."""

    async def next_job(self) -> Job | None: ...  # None: nothing to run after all (a reader's timeout)
    def release_job(self, job: Job) -> bool: ...
    def put_back(self, job: Job) -> None: ...


@dataclass(frozen=True)
class InputIntake:
    """A submitted job's image, as the intake offers it to ``JobStore.create``: the bytes already at
    hand, or a URL to fetch now (``fetch_now``) or in the background (``fetch_later(job, store_it)``,
    which fails the job when the input cannot be had)."""

    inline: bytes | None
    fetch_now: Callable[[], Awaitable[bytes]]
    fetch_later: Callable[[Job, Callable[[bytes], Awaitable[None]]], None]


# (outbox entry id, the final job, its webhook URL, the base URL its submitter used)
WebhookDue = tuple[str, Job, str, str]


class Gauges(Protocol):
    """A Prometheus collector of what the store reads live (queue depth, running jobs, workers)."""

    async def refresh(self) -> None: ...
    def collect(self): ...


class JobStore(Protocol):
    """Everything the service needs from where jobs live. Errors are domain errors (server/errors.py)."""

    results: ResultStorage

    async def open(self) -> None: ...  # start what the store runs (its workers, its connection)
    async def close(self) -> None: ...  # stop its workers, close its connections
    # Store and queue the job with its input (QueueFull past --max-queue); ``webhook``: (URL, base URL) to
    # call once the job ends. Nothing is kept when it raises.
    async def create(self, job: Job, webhook: tuple[str, str] | None, intake: InputIntake) -> None: ...
    async def find(self, job_id: str) -> Job | None: ...
    async def wait_final(self, job: Job, timeout: float) -> Job: ...  # asyncio.TimeoutError past timeout
    # The job each time what its status body shows changes, ending with its final state; None when
    # nothing happened for a while (a keep-alive).
    def changes(self, job: Job) -> AsyncIterator[Job | None]: ...
    async def cancel(self, job: Job) -> None: ...  # a queued job fails at once; a running one is stopped
    def queue_view(self, job: Job) -> QueueView: ...
    def attach(self, events) -> None: ...  # hear (and stream) the changes of jobs made in this process
    async def depth(self) -> int: ...
    async def readiness(self) -> dict: ...  # the /ready body: whether and which workers take jobs
    def gauges(self) -> Gauges: ...
    # Ids of final jobs past their retention, forgotten now; each returned once (its files go next).
    async def take_expired(self, now: float) -> list[str]: ...
    # Fail jobs still QUEUED one TTL after submission (with ``error``), and jobs whose input is not in
    # place ``input_deadline`` (+ ``margin``) seconds after it; how many.
    async def fail_overdue(self, now: float, error: str, input_deadline: float, margin: float) -> int: ...
    async def webhooks_due(self, consumer: str) -> list[WebhookDue]: ...  # waits a moment for some
    async def webhook_sent(self, entry_id: str) -> None: ...
    # Shutdown: end the jobs this process runs; their errors start with reason.
    async def drain(self, grace: float, reason: str = SHUTTING_DOWN) -> None: ...
