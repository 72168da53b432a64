"""Job change notifications: one hub per app that jobs report to, fanning out to listeners and streams.

Listeners (metrics, logs, webhooks) are plain callables run on the event loop thread; a failing one
is logged and never stops a job's transition. Streams (the SSE route) get snapshots of the fields
that change, taken when the change happens, so a slow reader still sees every step in order.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from server.jobs.record import Job

log = logging.getLogger("ltx2.events")

Listener = Callable[[Job, str], None]

STREAM_KEEPALIVE_SECONDS = 15.0
# Put into every stream's queue by close(): the stream ends without a final event.
_CLOSED = object()


@dataclass(frozen=True)
class JobSnapshot:
    """What a status body shows of a job's progress at one moment."""

    change: str
    status: str
    stage: str
    step: int
    total_steps: int
    progress: float

    @classmethod
    def of(cls, job: Job, change: str) -> JobSnapshot:
        return cls(change, job.status.value, job.stage, job.step, job.total_steps, round(job.progress, 4))

    @property
    def is_final(self) -> bool:
        return self.status in ("COMPLETED", "FAILED")


class JobEventHub:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._streams: dict[str, set[asyncio.Queue[JobSnapshot | object]]] = {}
        self.closed = False

    def add_listener(self, listener: Listener) -> None:
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
            snapshot = JobSnapshot.of(job, change)
            for queue in streams:
                queue.put_nowait(snapshot)

    async def stream(self, job: Job, keepalive: float = STREAM_KEEPALIVE_SECONDS) -> AsyncIterator[JobSnapshot | None]:
        """The job's snapshots from now until it ends (None when idle for `keepalive` seconds)."""
        queue: asyncio.Queue[JobSnapshot | object] = asyncio.Queue()
        self._streams.setdefault(job.id, set()).add(queue)
        try:
            current = JobSnapshot.of(job, "current")
            yield current
            if current.is_final:
                return
            while not self.closed:
                try:
                    snapshot = await asyncio.wait_for(queue.get(), keepalive)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if not isinstance(snapshot, JobSnapshot):
                    return  # _CLOSED: the server is stopping
                yield snapshot
                if snapshot.is_final:
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
