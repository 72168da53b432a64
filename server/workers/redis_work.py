"""The worker-host side of ``--store redis`` (server/jobs/redis_store.py has the layout and the guarded
scripts): takes jobs for idle workers, records what they report, and keeps the deliveries it holds
alive, or lets them go to be delivered again. Runs in ``ltx2-server worker``; never imports torch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from redis.exceptions import ResponseError

from server.clock import Clock
from server.jobs.record import Job, JobStatus, WorkFiles
from server.jobs.redis_store import (
    CONSUMER_GROUP,
    QUEUE_STREAM,
    STATS_KEY,
    UNREACHABLE_ERRORS,
    WORKERS_SET,
    RedisScripts,
    connect,
    credits_key,
    describe_url,
    ensure_consumer_group,
    job_from_record,
    job_key,
    stop_if_cancelled,
    transition_keys,
    worker_key,
)
from server.storage.results import ResultStorage

log = logging.getLogger("ltx2.redis")


@dataclass(eq=False)
class Delivery:
    """A job this host's worker holds: its stream entry, which delivery it is, and its pending writes."""

    job: Job
    consumer: str
    entry_id: str
    attempt: int
    latest_progress: tuple | None = None
    writes: asyncio.Task | None = None
    cancel_seen: bool = False
    released: bool = False


class RedisWorkSource:
    """A worker host's view of the queue: hands the next job to an idle worker, records what the
    worker reports, and keeps the deliveries it holds alive (or lets them go, to be redelivered)."""

    def __init__(
        self, url: str, host_name: str, clock: Clock, *, visibility_timeout: float, max_deliveries: int,
        results: ResultStorage, scratch_root: Path,
    ) -> None:  # fmt: skip
        self.url = url
        self.client = connect(url)
        self.scripts = RedisScripts(self.client)
        self.host_name = host_name
        self._clock = clock
        self._visibility = visibility_timeout
        self._max_deliveries = max_deliveries
        self._results = results
        self._scratch_root = scratch_root
        self._held: dict[str, Delivery] = {}
        self._putting_back: set[asyncio.Task] = set()
        self._closed = False
        # Set by the host: how to stop a job whose cancel flag appears (routes to its supervisor).
        self.cancel_running: Callable[[Job], None] | None = None
        self.taking_jobs = True

    @property
    def heartbeat_interval(self) -> float:
        return max(0.05, min(self._visibility / 4, 2.0))

    def for_worker(self, index: int) -> WorkerQueue:
        return WorkerQueue(self, f"{self.host_name}/{index}")

    async def close(self) -> None:
        self._closed = True
        await self.client.aclose()

    async def next_job(self, consumer: str, timeout: float | None = None) -> Job | None:
        """The oldest job no live worker holds: first one left by a dead worker, else a new one;
        None once `timeout` seconds pass without one (None: wait for as long as it takes)."""
        backoff = 0.2
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Checked here too, not only through task cancellation: a cancellation that lands inside
            # redis-py's own read timeout can be lost (asyncio.timeout uncancels), and this loop must
            # still end when the host closes the source.
            if self._closed:
                raise asyncio.CancelledError
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if not self.taking_jobs:
                await asyncio.sleep(0.5)
                continue
            try:
                entry = await self._claim_abandoned(consumer) or await self._read_new(consumer)
                if entry is None:
                    continue
                job = await self._start(consumer, *entry)
                backoff = 0.2
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost the group (restarted without persistence): make it again.
                await ensure_consumer_group(self.client)
                continue
            except UNREACHABLE_ERRORS as exc:
                stop_if_cancelled()
                log.warning("Redis at %s unreachable (%s); retrying in %.1f s", describe_url(self.url), exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            if job is not None:
                return job

    async def _claim_abandoned(self, consumer: str) -> tuple[str, str] | None:
        _, claimed, _ = await self.client.xautoclaim(
            QUEUE_STREAM, CONSUMER_GROUP, consumer, min_idle_time=int(self._visibility * 1000), start_id="0-0", count=1
        )
        for entry_id, fields in claimed:
            if entry_id in {held.entry_id for held in self._held.values()}:
                continue  # ours and alive (a heartbeat was late): keep running it
            if fields and "job" in fields:
                log.warning("job %s: its worker stopped answering; redelivered to %s", fields["job"], consumer)
                return entry_id, fields["job"]
            await self._forget_entry(entry_id)
        return None

    async def _read_new(self, consumer: str) -> tuple[str, str] | None:
        block_ms = int(max(50, min(1000, self._visibility * 250)))
        answer = await self.client.xreadgroup(CONSUMER_GROUP, consumer, {QUEUE_STREAM: ">"}, count=1, block=block_ms)
        for _, entries in answer or []:
            for entry_id, fields in entries:
                if fields and "job" in fields:
                    return entry_id, fields["job"]
                await self._forget_entry(entry_id)
        return None

    async def _start(self, consumer: str, entry_id: str, job_id: str) -> Job | None:
        outcome, detail = await self.scripts.start(
            keys=transition_keys(job_id), args=[job_id, consumer, repr(self._clock.now()), self._max_deliveries]
        )
        if outcome != "started":
            # Cancelled while queued, expired, or out of deliveries: nothing to run.
            log.info("job %s not run (%s %s)", job_id, outcome, detail)
            await self._forget_entry(entry_id)
            return None
        # The worker's own view: QUEUED until its supervisor starts it; the record already says PROCESSING.
        job = job_from_record(await self.client.hgetall(job_key(job_id)), delivered=True)
        delivery = Delivery(job, consumer, entry_id, int(detail))
        self._held[job_id] = delivery
        try:
            await self._prepare_files(delivery)
        except Exception as exc:  # noqa: BLE001 - e.g. the input is gone: this job fails, the worker goes on
            await self._finish(delivery, "FAILED", {"error": f"the input image could not be read: {exc}"})
            return None
        job.live.observer = lambda changed, change, delivery=delivery: self._on_change(delivery, change)
        return job

    async def _prepare_files(self, delivery: Delivery) -> None:
        job = delivery.job
        # The storage keeps each job in a folder of its own under the scratch root.
        image = await self._results.local_input(job.id, job.input or "", self._scratch_root)
        # Each delivery writes its own file: a worker presumed dead may still be writing the last one.
        name = f"output-{delivery.attempt}.mp4"
        job.live.files = WorkFiles(image, self._results.local_output_path(job.id, self._scratch_root).with_name(name))

    async def _forget_entry(self, entry_id: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(QUEUE_STREAM, CONSUMER_GROUP, entry_id)
            pipe.xdel(QUEUE_STREAM, entry_id)
            await pipe.execute()

    def _on_change(self, delivery: Delivery, change: str) -> None:
        if delivery.released:
            return
        job = delivery.job
        if change == "progress":
            delivery.latest_progress = (job.stage, job.step, job.total_steps, round(job.progress, 4))
            self._schedule(delivery, self._write_progress(delivery))
        elif change in ("completed", "failed"):
            self._schedule(delivery, self._write_final(delivery))

    def _schedule(self, delivery: Delivery, coro) -> None:
        """Writes of one delivery run one after another, in the order the worker reported."""
        previous = delivery.writes

        async def after_previous():
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await coro

        delivery.writes = asyncio.get_running_loop().create_task(after_previous())

    async def _write_progress(self, delivery: Delivery) -> None:
        report, delivery.latest_progress = delivery.latest_progress, None
        if report is None:
            return  # a later write already carried it
        stage, step, total, progress = report
        try:
            answer = await self.scripts.progress(
                keys=[job_key(delivery.job.id)], args=[delivery.attempt, stage, step, total, progress]
            )
        except UNREACHABLE_ERRORS:
            return  # progress is best effort; the next report or the final write carries on
        if answer == 1:
            self._cancel(delivery)

    async def _write_final(self, delivery: Delivery) -> None:
        job = delivery.job
        if job.status is JobStatus.COMPLETED:
            try:
                size = Path(job.output or "").stat().st_size
                location = await self._results.publish_output(job.id, Path(job.output or ""))
            except Exception as exc:  # noqa: BLE001 - the job fails; the worker goes on
                await self._finish(delivery, "FAILED", {"error": f"storing the video failed: {exc}"})
                return
            fields: dict[str, str | None] = dict(output=location, output_size=str(size), seed=str(job.seed))
            fields.update(progress="1", stage_seconds=json.dumps(job.stage_seconds))
            fields["enhanced_prompt"] = job.enhanced_prompt
            if not await self._finish(delivery, "COMPLETED", fields):
                await self._results.delete_output(location)
        else:
            await self._finish(delivery, "FAILED", {"error": job.error or "generation failed", "fault": job.fault})

    async def _finish(self, delivery: Delivery, status: str, fields: Mapping[str, str | None]) -> bool:
        """Record the end of the delivery and let its entry go; False when the job was no longer
        this delivery's to finish (redelivered after this worker was presumed dead, or expired)."""
        job = delivery.job
        written = {"worker": delivery.consumer, **{name: value for name, value in fields.items() if value}}
        if status == "FAILED":
            written.setdefault("fault", "generation")
        started = job.started_at if job.started_at is not None else self._clock.now()
        gpu_seconds = max(0.0, self._clock.now() - started)
        pairs = [item for pair in written.items() for item in pair]
        keys = [*transition_keys(job.id), credits_key(job.owner) if job.owner else "", STATS_KEY]
        args: list[str | int | float] = [job.id, delivery.attempt, repr(self._clock.now()), status, gpu_seconds, *pairs]
        answer = await self._retrying(lambda: self.scripts.finish(keys=keys, args=args))
        if answer != "ok":
            log.warning("job %s: its end was not recorded (the job is %s now: redelivered or expired)", job.id, answer)
        await self._retrying(lambda: self._forget_entry(delivery.entry_id))
        self._held.pop(job.id, None)
        await self._results.discard_local(job.id, self._scratch_root)
        return answer == "ok"

    async def _retrying(self, operation):
        """A final write must land: retried while Redis is unreachable (it may be restarting)."""
        backoff = 0.1
        while True:
            try:
                return await operation()
            except UNREACHABLE_ERRORS as exc:
                stop_if_cancelled()
                log.warning("Redis unreachable (%s); retrying a final write in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)

    async def hand_back_all(self) -> int:
        """On a graceful stop: give every job still held straight back to the queue, so another
        worker takes it now rather than after the visibility timeout (in its place: oldest first)."""
        handed = 0
        for delivery in list(self._held.values()):
            delivery.released = True
            self._held.pop(delivery.job.id, None)
            if await self.scripts.hand_back(keys=[job_key(delivery.job.id)], args=[delivery.attempt]):
                await self._make_claimable(delivery)
                handed += 1
        return handed

    def put_back(self, job: Job) -> None:
        """Taken but never started (the worker died first): back to the queue in its place, uncounted."""
        delivery = self._held.pop(job.id, None)
        if delivery is not None:
            delivery.released = True
            self._putting_back.add(asyncio.get_running_loop().create_task(self._put_back(delivery)))

    async def _put_back(self, delivery: Delivery) -> None:
        job_id = delivery.job.id
        try:
            if await self.scripts.put_back(keys=transition_keys(job_id), args=[job_id, delivery.attempt]):
                await self._make_claimable(delivery)
        except UNREACHABLE_ERRORS as exc:
            # The entry stays pending: it is redelivered after the visibility timeout, as a crashed job's is.
            log.warning("job %s: not put back now (%s); redelivered after %.0f s", job_id, exc, self._visibility)
        finally:
            self._putting_back.discard(asyncio.current_task())

    async def _make_claimable(self, delivery: Delivery) -> None:
        # Marked idle for longer than the visibility timeout: the next XAUTOCLAIM, before any new entry, takes it.
        await self.client.xclaim(
            QUEUE_STREAM, CONSUMER_GROUP, delivery.consumer, min_idle_time=0,
            message_ids=[delivery.entry_id], idle=int(self._visibility * 1000) + 1000, justid=True,
        )  # fmt: skip

    def holds_jobs(self) -> bool:
        return bool(self._held)

    async def settle_writes(self, timeout: float = 10.0) -> None:
        writes = [held.writes for held in self._held.values() if held.writes is not None] + [*self._putting_back]
        if writes:
            await asyncio.wait(writes, timeout=timeout)

    def release(self, job: Job) -> bool:
        """The worker died running this job: stop keeping its delivery alive, so that after the
        visibility timeout any idle worker (this host's restarted one included) claims it again."""
        delivery = self._held.pop(job.id, None)
        if delivery is None:
            return False
        delivery.released = True
        log.warning("job %s: its worker died; it will be redelivered after %.0f s", job.id, self._visibility)
        return True

    def _cancel(self, delivery: Delivery) -> None:
        if not delivery.cancel_seen and self.cancel_running is not None:
            delivery.cancel_seen = True
            self.cancel_running(delivery.job)

    async def heartbeat_forever(self, describe_workers) -> None:
        """Touch held entries (so they are not redelivered), notice cancellations, report workers."""
        while not self._closed:
            try:
                await self._heartbeat(describe_workers())
            except UNREACHABLE_ERRORS as exc:
                stop_if_cancelled()
                log.debug("heartbeat skipped: Redis unreachable (%s)", exc)
            except Exception:  # noqa: BLE001 - one bad beat must not stop the next
                log.exception("heartbeat failed")
            await asyncio.sleep(self.heartbeat_interval)

    async def _heartbeat(self, workers: list[dict]) -> None:
        held = list(self._held.values())
        now = self._clock.now()
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery in held:
                pipe.xclaim(
                    QUEUE_STREAM, CONSUMER_GROUP, delivery.consumer, min_idle_time=0,
                    message_ids=[delivery.entry_id], justid=True,
                )  # fmt: skip
                pipe.hget(job_key(delivery.job.id), "cancel")
            lifetime_ms = int(max(3.0, self.heartbeat_interval * 4) * 1000)
            for info in workers:
                name = f"{self.host_name}/{info['index']}"
                pipe.set(worker_key(name), json.dumps({**info, "name": name, "host": self.host_name}), px=lifetime_ms)
                pipe.zadd(WORKERS_SET, {name: now})
            pipe.zremrangebyscore(WORKERS_SET, "-inf", now - 3600)  # hosts long gone
            answers = await pipe.execute()
        for position, delivery in enumerate(held):
            if answers[position * 2 + 1] == "1":
                self._cancel(delivery)

    async def forget_workers(self, workers: list[dict]) -> None:
        names = [f"{self.host_name}/{info['index']}" for info in workers]
        if names:
            await self.client.delete(*[worker_key(name) for name in names])
            await self.client.zrem(WORKERS_SET, *names)


@dataclass(eq=False)
class WorkerQueue:
    """One worker's handle on the shared queue (its own consumer name), given to its supervisor."""

    _source: RedisWorkSource
    consumer: str

    async def next_job(self, timeout: float | None = None) -> Job | None:
        return await self._source.next_job(self.consumer, timeout)

    def release_job(self, job: Job) -> bool:
        return self._source.release(job)

    def put_back(self, job: Job) -> None:
        self._source.put_back(job)
