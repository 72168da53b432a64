"""The webhook outbox: delivers the webhooks of jobs that ended, as the store hands them out. A shared
store's outbox is read by every API replica in one group, so a webhook goes out even when the replica
that took the job is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Callable

from server.errors import ServiceUnavailable
from server.jobs import Job, JobStore
from server.webhooks import WebhookSender

log = logging.getLogger("ltx2.service")


class WebhookOutbox:
    def __init__(self, store: JobStore, sender: WebhookSender, build_body: Callable[[Job, str], dict], spawn) -> None:
        self.store, self.sender, self.build_body, self.spawn = store, sender, build_body, spawn

    async def send_forever(self) -> None:
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        while True:
            try:
                for entry_id, job, url, base in await self.store.webhooks_due(consumer):
                    self.spawn(self.send(entry_id, job, url, base))
            except Exception as exc:  # noqa: BLE001 - Redis away or one bad read: try again shortly
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                if not isinstance(exc, ServiceUnavailable):
                    log.exception("reading the webhook outbox failed")
                await asyncio.sleep(1.0)

    async def send(self, entry_id: str, job: Job, url: str, base: str) -> None:
        """Deliver one outbox entry, then acknowledge it, whatever happened: an entry that fails
        every time must not come back every takeover period until its job expires."""
        extra = {"request_id": job.id, "event": "webhook", "status": "error"}
        try:
            body = json.dumps(self.build_body(job, base), separators=(",", ":")).encode()
            await self.sender.deliver(job.id, url, body)  # retried with backoff; given up is logged
        except Exception:  # noqa: BLE001 - given up, logged with the request id, and acknowledged below
            log.exception("webhook for %s given up: sending it failed", job.id, extra=extra)
        try:
            await self.store.webhook_sent(entry_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the entry is taken over and sent again later
            log.warning("webhook for %s: acknowledging its outbox entry failed (%s)", job.id, exc, extra=extra)
