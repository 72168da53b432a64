"""Job change notifications: one hub per app that jobs report to. Listeners (metrics, logs, webhooks) run on
the event loop thread, and a failing one never stops a job's transition; streams (the SSE route) get a
snapshot of the job taken at each change, so a slow reader still sees every step in order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import AsyncIterator

from server.jobs.progress import ProgressTracker
from server.jobs.record import Job, JobLive, JobObserver

log = logging.getLogger("ltx2.events")
STREAM_KEEPALIVE_SECONDS = 15.0
# Put into every stream's queue by close(): the stream ends without a final event.
_CLOSED = object()


def snapshot(job: Job) -> Job:
    """A copy of the job as it is now: the job moves on, a stream shows the moment it was told of."""
    return replace(job, live=JobLive(tracker=ProgressTracker(progress=job.progress)))


class JobEventHub:
    def __init__(self) -> None:
        self._listeners: list[JobObserver] = []
        self._streams: dict[str, set[asyncio.Queue[Job | object]]] = {}
        self.closed = False

    def add_listener(self, listener: JobObserver) -> None:
        self._listeners.append(listener)

    def publish(self, job: Job, change: str) -> None:
        """The job observer: called by Job after each change (and by the service on submission)."""
        for listener in self._listeners:
            try:
                listener(job, change)
            except Exception:  # noqa: BLE001 - a listener's bug must not fail the job
                log.exception("job listener failed on %s %s", job.id, change)
        streams = self._streams.get(job.id)
        if streams:
            copy = snapshot(job)
            for queue in streams:
                queue.put_nowait(copy)

    async def stream(self, job: Job, keepalive: float = STREAM_KEEPALIVE_SECONDS) -> AsyncIterator[Job | None]:
        """The job's snapshots from now until it ends (None when idle for `keepalive` seconds)."""
        queue: asyncio.Queue[Job | object] = asyncio.Queue()
        self._streams.setdefault(job.id, set()).add(queue)
        try:
            current = snapshot(job)
            yield current
            if current.status.is_final:
                return
            while not self.closed:
                try:
                    copy = await asyncio.wait_for(queue.get(), keepalive)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if not isinstance(copy, Job):
                    return  # _CLOSED: the server is stopping
                yield copy
                if copy.status.is_final:
                    return
        finally:
            streams = self._streams.get(job.id)
            if streams is not None:
                streams.discard(queue)
                if not streams:
                    del self._streams[job.id]

    def close(self) -> None:
        """End every open stream (the server is stopping); clients reconnect or poll."""
        self.closed = True
        for streams in self._streams.values():
            for queue in streams:
                queue.put_nowait(_CLOSED)
