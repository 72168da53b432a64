"""Webhooks: the final result body POSTed to the URL given at submission, signed with ``x-ltx2-signature:
sha256=<HMAC-SHA256 of the body bytes under --webhook-secret>``, retried, as tasks on the API process's
event loop (the worker never waits; a slow receiver only delays its own retries).

URLs follow the image URLs' rules (server/jobs/netguard.py), checked before each attempt, except that
private and loopback addresses are allowed (on-prem receivers live there). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
from typing import Callable
from urllib.parse import urlsplit

import httpx

from server.errors import InvalidRequest, ServiceUnavailable
from server.jobs.netguard import check_url, pinned_client, pinned_request, refusal_reason
from server.jobs.record import Job
from server.jobs.store import JobStore
from server.observability.redaction import control_character_error, redact_urls_in

log = logging.getLogger("ltx2.webhooks")
outbox_log = logging.getLogger("ltx2.service")

SIGNATURE_HEADER = "x-ltx2-signature"
MAX_URL_CHARS = 2048
MAX_BACKOFF_SECONDS = 300.0
MAX_CONCURRENT_DELIVERIES = 16
RETRY_STATUSES = frozenset({408, 425, 429})


def check_webhook_url(url: str) -> str:
    """The URL if its form is acceptable (scheme, host, no literal forbidden address); ValueError otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"longer than {MAX_URL_CHARS} characters")
    reason = control_character_error(url)
    if reason:
        raise ValueError(reason)
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"URL scheme {parts.scheme!r} is not allowed (use http or https)")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url.strip()  # a name: checked once resolved, before each attempt
    reason = refusal_reason(address, block_private=False)
    if reason:
        raise ValueError(f"{address} is {reason}")
    return url.strip()


class WebhookSender:
    def __init__(self, secret: str, *, timeout: float, retries: int, backoff: float) -> None:
        self._secret = secret
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)

    def require_secret(self) -> None:
        if not self._secret:
            raise InvalidRequest("webhook: this server has no --webhook-secret, so it cannot sign webhooks")

    async def deliver(self, job_id: str, url: str, body: bytes) -> bool:
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: "sha256=" + hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest(),
            "x-request-id": job_id,
            "user-agent": "ltx2-server-webhook",
        }
        attempts = 1 + self._retries
        for attempt in range(1, attempts + 1):
            try:
                outcome, retry = await self._attempt(url, body, {**headers, "x-ltx2-delivery-attempt": str(attempt)})
            except Exception as exc:  # noqa: BLE001 - whatever goes wrong is a failed attempt, never a dead task
                log.exception("webhook for %s attempt %d raised", job_id, attempt, extra=_extra(job_id, "error"))
                outcome, retry = f"{type(exc).__name__}: {exc}", True
            outcome = redact_urls_in(outcome)
            extra = _extra(job_id, outcome)
            if outcome == "delivered":
                log.info("webhook for %s delivered (attempt %d)", job_id, attempt, extra=extra)
                return True
            if not retry or attempt == attempts:
                log.warning("webhook for %s given up after attempt %d: %s", job_id, attempt, outcome, extra=extra)
                return False
            delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1))
            log.info("webhook for %s attempt %d: %s; retrying in %.1f s", job_id, attempt, outcome, delay, extra=extra)
            await asyncio.sleep(delay)
        return False

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[str, bool]:
        """('delivered' | what went wrong, whether another attempt may help)."""
        reason = control_character_error(url)
        if reason:  # stored by a version that did not refuse it at submission: httpx would raise
            return f"refused: webhook: {reason}", False
        async with self._slots:
            try:
                target = await check_url(url, block_private=False, timeout=self._timeout, field="webhook")
                request = pinned_request(target, "POST")
                request["headers"].update(headers)
                # Tries each checked address in turn; no proxy from the environment (see netguard).
                async with pinned_client(timeout=self._timeout) as client:
                    response = await client.request(**request, content=body)
            except InvalidRequest as exc:
                return f"refused: {exc.message}", False
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as exc:
                return f"refused: webhook: not a URL that can be sent to ({type(exc).__name__}: {exc})", False
            except (OSError, httpx.HTTPError) as exc:
                return f"{type(exc).__name__}: {exc}", True
        if 200 <= response.status_code < 300:
            return "delivered", True
        retry = response.status_code >= 500 or response.status_code in RETRY_STATUSES
        return f"HTTP {response.status_code}", retry


class WebhookOutbox:
    """Delivers the webhooks of jobs that ended, as the store hands them out (a shared store's outbox is read by
    every replica in one group: a webhook goes out even when the replica that took the job is gone)."""

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
                    outbox_log.exception("reading the webhook outbox failed")
                await asyncio.sleep(1.0)

    async def send(self, entry_id: str, job: Job, url: str, base: str) -> None:
        """Deliver one outbox entry, then acknowledge it, whatever happened: an entry that fails
        every time must not come back every takeover period until its job expires."""
        extra = {"request_id": job.id, "event": "webhook", "status": "error"}
        try:
            body = json.dumps(self.build_body(job, base), separators=(",", ":")).encode()
            await self.sender.deliver(job.id, url, body)  # retried with backoff; given up is logged
        except Exception:  # noqa: BLE001 - given up, logged with the request id, and acknowledged below
            outbox_log.exception("webhook for %s given up: sending it failed", job.id, extra=extra)
        try:
            await self.store.webhook_sent(entry_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the entry is taken over and sent again later
            outbox_log.warning("webhook for %s: acknowledging its outbox entry failed (%s)", job.id, exc, extra=extra)


def _extra(job_id: str, status: str) -> dict:
    return {"request_id": job_id, "event": "webhook", "status": status}
