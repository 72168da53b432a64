"""Retention: every sweep deletes the files of jobs past their retention (the store forgets their
records), then fails the jobs that never ended: still QUEUED one TTL after submission, or still
waiting for their input past the intake's deadline. Failed now, they expire at a later sweep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from server.clock import Clock
from server.jobs.store import JobStore
from server.settings import Settings

log = logging.getLogger("ltx2.service")


class Retention:
    def __init__(self, settings: Settings, store: JobStore, clock: Clock, input_deadline: Callable[[], float]) -> None:
        self.settings, self.store, self.clock, self.input_deadline = settings, store, clock, input_deadline

    async def sweep(self) -> int:
        expired = await self.store.take_expired(self.clock.now())
        for job_id in expired:
            await self.store.results.delete_job(job_id)
        if expired:
            log.info("expired %d jobs", len(expired))
        ttl = self.settings.ttl_seconds
        error = f"expired: still queued {ttl:g} s after submission (the retention period); submit it again"
        deadline, margin = self.input_deadline(), self.settings.sweep_interval
        overdue = await self.store.fail_overdue(self.clock.now(), error, deadline, margin)
        if overdue:
            log.warning("failed %d jobs that never ended (queued one TTL, or no input in time)", overdue)
        return len(expired)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep must not stop the next one
                log.exception("sweeping expired jobs failed")
