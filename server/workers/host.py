"""``ltx2-server worker --store redis://...``: a GPU worker host with no HTTP API and no torch. Its
supervised worker children (one per device, as ``serve``'s) take jobs from the shared Redis queue. On
SIGTERM/SIGINT it takes no new job, gives running ones the shutdown grace period, and leaves any that
did not finish to be delivered again elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from server.clock import SystemClock
from server.jobs.redis_store import UNREACHABLE_ERRORS, describe_url, ensure_consumer_group
from server.settings import Settings
from server.storage.results import results_storage
from server.workers.pool import build_pool, devices_for
from server.workers.redis_work import RedisWorkSource

log = logging.getLogger("ltx2.worker_host")


class WorkerHost:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        # Inputs fetched from a bucket and videos before their upload wait here.
        self.scratch = Path(tempfile.mkdtemp(prefix="ltx2-worker-"))
        results = results_storage(
            settings.results_dir, settings.results_s3, settings.s3_endpoint_url, settings.ttl_seconds
        )
        # Named per process, so two hosts never share deliveries.
        self.source = RedisWorkSource(
            settings.store,
            f"{socket.gethostname()}-{os.getpid()}",
            self.clock,
            visibility_timeout=settings.visibility_timeout,
            max_deliveries=settings.max_deliveries,
            results=results,
            scratch_root=self.scratch,
        )
        self.pool = build_pool(settings, self.source.for_worker, self.clock, devices_for(settings))
        # A job's cancel flag, noticed by the source, stops it on the worker running it.
        self.source.cancel_running = self.pool.cancel

    def describe_workers(self) -> list[dict]:
        return [worker.as_dict() for worker in self.pool.workers]

    async def run(self, stop: asyncio.Event) -> int:
        await self._wait_for_store(stop)
        if stop.is_set():
            return 0
        await self.pool.start()
        heartbeat = asyncio.create_task(self.source.heartbeat_forever(self.describe_workers), name="ltx2-heartbeat")
        store = describe_url(self.settings.store)
        log.info(
            "worker host %s: %d worker(s) taking jobs from %s", self.source.host_name, len(self.pool.workers), store
        )
        await stop.wait()
        await self._drain(self.settings.shutdown_grace)
        heartbeat.cancel()
        await self.pool.stop()
        try:
            handed = await self.source.hand_back_all()
            if handed:
                log.info("gave %d unfinished job(s) back to the queue for other workers", handed)
        except UNREACHABLE_ERRORS:
            pass  # they are delivered again after the visibility timeout
        try:
            await self.source.forget_workers(self.describe_workers())
        except UNREACHABLE_ERRORS:
            pass
        await self.source.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return 0

    async def _wait_for_store(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await ensure_consumer_group(self.source.client)
                return
            except UNREACHABLE_ERRORS as exc:
                log.error(
                    "Redis at %s unreachable (%s); retrying in %.1f s", describe_url(self.settings.store), exc, delay
                )
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(10.0, delay * 2)

    async def _drain(self, grace: float) -> None:
        self.source.taking_jobs = False
        busy = [worker for worker in self.pool.workers if worker.job is not None]
        log.info("stopping: no new jobs; waiting up to %g s for %d running", grace, len(busy))
        deadline = asyncio.get_running_loop().time() + grace
        while self.source.holds_jobs() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await self.source.settle_writes()


def run_worker_host(settings: Settings) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await WorkerHost(settings).run(stop)

    return asyncio.run(main())
