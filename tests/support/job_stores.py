"""Both job stores opened the same way for the store tests: the API's side (``JobStore``), worker 0's
side (``JobQueue``) and a manual clock, over one results directory; Redis on a real redis-server."""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from pipelines.interface import JobSpec
from server.clock import ManualClock
from server.jobs.events import JobEventHub
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.record import Job, new_job_id
from server.jobs.store import InputIntake, JobQueue, JobStore
from server.storage.results import SharedDirStorage

SPEC = JobSpec(
    prompt="a red kite", negative_prompt="", width=64, height=64, num_frames=9, fps=24, seed=1, guidance_scale=3.0
)

# A worker's delivery is presumed dead after this long without a heartbeat (the tests run none).
VISIBILITY_SECONDS = 1.0


def queued_job(
    clock: ManualClock, job_id: str | None = None, owner: str | None = None, image: str | None = None
) -> Job:
    return Job(id=job_id or new_job_id(), params=SPEC, created_at=clock.now(), owner=owner, input=image)


def clock_near_now() -> ManualClock:
    """A manual clock at about the real time (Redis expires records on its own clock), on a multiple of
    1/8 s so that advancing it by eighths hits a retention boundary exactly, in Python as in Lua."""
    return ManualClock(math.floor(time.time() * 8) / 8)


async def no_fetch() -> bytes:
    raise AssertionError("the image is inline")


@dataclass
class OpenStore:
    store: JobStore
    worker: JobQueue  # worker 0's queue
    clock: ManualClock
    hub: JobEventHub
    # Lets what a worker reported reach the store (Redis writes it in background tasks).
    settle: Callable[[], Awaitable[None]]

    async def create(self, webhook: tuple[str, str] | None = None) -> Job:
        """A job submitted now with its image inline, reporting to the hub as the intake's jobs do."""
        job = queued_job(self.clock)
        job.live.observer = self.hub.publish
        await self.store.create(job, webhook, InputIntake(b"png", no_fetch, lambda *_: None))
        return job

    async def take(self, timeout: float = 10.0) -> Job:
        """The job the store hands worker 0 next (its own view of it, QUEUED until started)."""
        job = await asyncio.wait_for(self.worker.next_job(), timeout)
        assert job is not None, "the queue handed out nothing"
        return job

    async def complete(self, job: Job, seed: int = 7) -> None:
        """What a worker does with a job it ran: writes its video and reports success."""
        output = job.live.files.output
        output.write_bytes(b"mp4")
        job.succeed(self.clock.now(), output, seed, {"stage1": 1.0})
        await self.settle()

    async def caught_up(self) -> None:
        """Wait for the real time to reach the manual clock's, as Redis's own expiry goes by it."""
        await asyncio.sleep(max(0.0, self.clock.now() - time.time()))


async def nothing_to_settle() -> None:
    return None


@asynccontextmanager
async def open_store(
    kind: str, results_dir: Path, redis_url: str | None, max_queue: int, ttl: float
) -> AsyncIterator[OpenStore]:
    clock = clock_near_now()
    results = SharedDirStorage(results_dir)
    hub = JobEventHub()
    if kind == "memory":
        memory = InMemoryJobStore(max_queue, results, clock, ttl)
        opened = OpenStore(memory, memory, clock, hub, nothing_to_settle)
        closers: list[Callable[[], Awaitable[None]]] = [memory.close]
    else:
        from server.jobs.redis_store import RedisJobStore
        from server.workers.redis_work import RedisWorkSource

        assert redis_url is not None
        store = RedisJobStore(redis_url, results, clock, max_queue, ttl)
        source = RedisWorkSource(
            redis_url, "host", clock, visibility_timeout=VISIBILITY_SECONDS, max_deliveries=3,
            results=results, scratch_root=results_dir.parent / "scratch",
        )  # fmt: skip
        opened = OpenStore(store, source.for_worker(0), clock, hub, source.settle_writes)
        closers = [store.close, source.close]
    opened.store.attach(hub)
    await opened.store.open()
    try:
        yield opened
    finally:
        for close in closers:
            await close()
