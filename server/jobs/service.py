"""What the routes ask for: one facade over intake (submission and its image), the webhook outbox,
retention, outputs and the ``JobStore``. It raises domain errors (``server.errors``) and never builds HTTP
answers: the webhook's body is the API's result body, handed in by ``create_app``.
"""

from __future__ import annotations

import asyncio
import hmac
from functools import partial
from typing import Callable, Sequence

from pipelines.interface import JobSpec
from pipelines.lora_files import list_loras
from server.clock import Clock
from server.errors import JobNotFound, NotCancellable, ServiceUnavailable, Unauthorized, WaitTimedOut
from server.jobs.events import JobEventHub
from server.jobs.intake import Background, Intake
from server.jobs.limits import LocalLimits, load_key_policies, owner_id
from server.jobs.outputs import Outputs
from server.jobs.record import Job
from server.jobs.retention import Retention
from server.jobs.store import SHUTTING_DOWN, JobStore
from server.jobs.webhooks import WebhookOutbox, WebhookSender
from server.observability.logs import job_log, log_job_change
from server.observability.metrics import ServerMetrics
from server.settings import Settings
from server.workers.messages import FAULT_CANCELLED

# (service, final job, the base URL its submitter used) -> the body its webhook POSTs
ResultBody = Callable[["JobService", Job, str], dict]


class JobService:
    def __init__(
        self, settings: Settings, store: JobStore, clock: Clock, limits=None, result_body: ResultBody | None = None
    ) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.key_policies = load_key_policies(settings.api_keys)
        self.api_keys = frozenset(self.key_policies)
        self.limits = limits or LocalLimits(self.key_policies, settings.rate_limit, clock)
        self.accepting = True
        self.background = Background()
        self.events = JobEventHub()
        self.metrics = ServerMetrics(store.gauges(), clock)
        self.webhooks = WebhookSender(
            settings.webhook_secret,
            timeout=settings.webhook_timeout,
            retries=settings.webhook_retries,
            backoff=settings.webhook_backoff,
        )
        self.intake = Intake(settings, store, clock, self.limits, self.events, self.webhooks, self.background)
        # The LoRAs requests may apply (--loras; the folder was checked at start-up), listed by GET /v1/loras.
        self.loras = list_loras(settings.loras)
        self.intake.lora_names = frozenset(lora.name for lora in self.loras)
        self.outputs = Outputs(store)
        self.retention = Retention(settings, store, clock, self.intake.input_deadline)
        # Without a result body (``generate``, which takes no webhooks) no outbox runs.
        self.outbox: WebhookOutbox | None = None
        if result_body is not None:
            self.outbox = WebhookOutbox(store, self.webhooks, partial(result_body, self), self.background.spawn)
        store.attach(self.events)
        for listener in (self.metrics.on_job_change, log_job_change, self.intake.on_job_change):
            self.events.add_listener(listener)

    def authenticate(self, presented: str | None) -> str | None:
        """The caller's key (its identity), or None when auth is off; Unauthorized otherwise."""
        if not self.api_keys:
            return None
        if not presented:
            raise Unauthorized("missing API key: send it in the x-api-key header")
        # A list, not any()'s shortcut: comparing against every key, timing does not reveal which one matched.
        if not any([hmac.compare_digest(presented.encode(), key.encode()) for key in self.api_keys]):
            raise Unauthorized("invalid API key")
        return presented

    async def submit(
        self, spec: JobSpec, image: str | None, webhook: str | None, owner: str | None, base_url: str = "",
        keyframe_images: Sequence[str] = (),
    ) -> Job:  # fmt: skip
        if not self.accepting:
            raise ServiceUnavailable("the server is shutting down and accepts no new jobs")
        return await self.intake.submit(spec, image, webhook, owner, base_url, keyframe_images)

    async def get(self, job_id: str, key: str | None) -> Job:
        job = await self.store.find(job_id)
        # Another key's job answers exactly like a missing one, so ids leak nothing.
        if job is None or job.owner != owner_id(key):
            raise JobNotFound(job_id)
        return job

    async def cancel(self, job: Job) -> Job:
        """Cancel a queued or running job; returns it once it is FAILED with error "cancelled"."""
        if job.status.is_final:
            if job.fault == FAULT_CANCELLED:
                return job  # cancelling twice is harmless
            raise NotCancellable(f"request {job.id} already finished ({job.status.value}); there is nothing to cancel")
        await self.store.cancel(job)
        # A running job stops at its next step, or its worker is killed after the grace period.
        stalled = f"request {job.id} was asked to stop but has not stopped yet; poll it through /v2"
        return await self._final_within(job, self.settings.cancel_grace + 30, stalled)

    async def abandon(self, job: Job, reason: str) -> None:
        """Its caller went away: cancel the job through the normal path (a queued job never runs, a
        running one stops at its next step) without waiting for it to stop. A final job is left as is."""
        current = await self.store.find(job.id) or job
        if current.status.is_final:
            return
        extra = {"request_id": job.id, "event": "abandoned", "error": reason}
        job_log.warning("job %s cancelled: %s", job.id, reason, extra=extra)
        await self.store.cancel(current)

    async def wait_until_final(self, job: Job, timeout: float) -> Job:
        going_on = f"request {job.id} did not finish within {timeout:g} s; it goes on, poll it through /v2"
        return await self._final_within(job, timeout, going_on)

    async def _final_within(self, job: Job, timeout: float, timed_out_message: str) -> Job:
        try:
            return await self.store.wait_final(job, timeout)
        except asyncio.TimeoutError:
            raise WaitTimedOut(timed_out_message, headers={"x-request-id": job.id}) from None

    async def open(self) -> None:
        await self.store.open()
        self.background.spawn(self.retention.sweep_forever())
        if self.outbox is not None:
            self.background.spawn(self.outbox.send_forever())

    async def drain(self, grace: float, reason: str = SHUTTING_DOWN) -> None:
        self.accepting = False
        await self.store.drain(grace, reason)

    async def close(self) -> None:
        self.accepting = False
        self.events.close()
        self.background.cancel_all()
        await self.store.close()
