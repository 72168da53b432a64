"""What the routes ask for: submit a job, find a job, wait for one, expire old ones.

Routes stay thin; this layer raises domain errors (``server.errors``) and never builds HTTP answers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import shutil
import socket
import time
from pathlib import Path

from server.clock import Clock
from server.errors import (
    GenerationFailed,
    InvalidRequest,
    JobNotFound,
    NotCancellable,
    OutputGone,
    QueueFull,
    ServiceUnavailable,
    Unauthorized,
    WaitTimedOut,
)
from server.events import JobEventHub
from server.images import (
    DECODE_TIMEOUT_SECONDS,
    FetchSlot,
    FetchSlots,
    classify_image_source,
    decode_image,
    fetch_image_url,
)
from server.jobs import Job, JobStatus, JobStore, new_job_id
from server.limits import LocalLimits, load_key_policies, owner_id
from server.logs import log_job_change
from server.messages import FAULT_CANCELLED, FAULT_EXPIRED, FAULT_INPUT, FAULT_SHUTDOWN
from server.metrics import ServerMetrics
from server.netguard import Resolver, check_url
from server.params import I2VParams, job_spec
from server.pool import WorkerPool
from server.progress import DurationEstimator, eta_seconds
from server.results import api_output_url, results_storage
from server.settings import Settings
from server.webhooks import WebhookSender

log = logging.getLogger("ltx2.service")

SHUTDOWN_LINGER_SECONDS = 2.0
# Beyond the fetch and decode bounds, time for writing the input to disk before a job whose input is
# still not ready fails.
INPUT_DEADLINE_MARGIN_SECONDS = 10.0


class JobService:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        supervisor: WorkerPool | None,
        clock: Clock,
        results_dir: Path,
        limits=None,
    ) -> None:
        """``supervisor`` runs this process's workers; None for an API replica of a shared store,
        whose jobs run on worker hosts (``ltx2-server worker``)."""
        self.settings = settings
        self.store = store
        self.supervisor = supervisor
        self.clock = clock
        self.results_dir = results_dir
        self.key_policies = load_key_policies(settings.api_keys)
        self.api_keys = frozenset(self.key_policies)
        self.limits = limits or LocalLimits(self.key_policies, settings.rate_limit, clock)
        # Where a shared store's inputs and videos live: a path every host shares, or a bucket.
        self.results = (
            results_storage(results_dir, settings.results_s3, settings.s3_endpoint_url, settings.ttl_seconds)
            if store.shared
            else None
        )
        # Tests swap in a resolver to show what DNS answers are refused; None is the system's.
        self.resolver: Resolver | None = None
        self.accepting = True
        self._background: set[asyncio.Task] = set()
        # Image downloads in flight, by job id, so that cancelling a job stops its download too.
        self._fetches: dict[str, asyncio.Task] = {}
        self.fetch_slots = FetchSlots(settings.max_image_fetches)
        self.events = JobEventHub()
        self.durations = DurationEstimator()
        self.events.add_listener(self._learn_duration)
        self.metrics = ServerMetrics(store, supervisor, clock, stale_after=max(10.0, settings.visibility_timeout))
        self.events.add_listener(self.metrics.on_job_change)
        self.events.add_listener(log_job_change)
        self.webhooks = WebhookSender(
            settings.webhook_secret,
            timeout=settings.webhook_timeout,
            retries=settings.webhook_retries,
            backoff=settings.webhook_backoff,
        )
        self.events.add_listener(self.webhooks.on_job_change)

    # ---- auth -------------------------------------------------------------------------------

    def authenticate(self, presented: str | None) -> str | None:
        """The caller's key (its identity), or None when auth is off; Unauthorized otherwise."""
        if not self.api_keys:
            return None
        if not presented:
            raise Unauthorized("missing API key: send it in the x-api-key header")
        matched = False
        for key in self.api_keys:
            # Compare against every key so timing does not reveal which prefix matched.
            matched |= hmac.compare_digest(presented.encode(), key.encode())
        if not matched:
            raise Unauthorized("invalid API key")
        return presented

    # ---- jobs -------------------------------------------------------------------------------

    async def submit(self, params: I2VParams, owner: str | None, base_url: str = "") -> Job:
        """Queue a job; `base_url` is where the submitter reached us (for absolute URLs in its webhook)."""
        if not self.accepting:
            raise ServiceUnavailable("the server is shutting down and accepts no new jobs")
        self._check_prompt_length(params)
        if params.webhook:
            self.webhooks.require_secret()
        source = classify_image_source(params.image, self.settings.max_image_bytes)
        if source.inline is not None:
            await decode_image(source.inline, self.settings.max_image_pixels)
        else:
            # Scheme and address are checked now, so a refused URL is a 400 at once; redirects
            # are only seen while fetching, and a refused one fails the job (fault: input).
            await check_url(
                source.url,
                block_private=self.settings.block_private_image_urls,
                timeout=self.settings.image_connect_timeout,
                resolver=self.resolver,
            )
        # Held until the download ends (by the background fetch of an in-memory store's job).
        slot = self.fetch_slots.take() if source.url is not None else None
        try:
            return await self._accept(params, owner, base_url, source, slot)
        finally:
            if slot is not None and slot.task is None:
                slot.release()

    async def _accept(self, params: I2VParams, owner: str | None, base_url: str, source, slot: FetchSlot | None) -> Job:
        key = owner
        await self.limits.admit(key)
        # The image itself goes to disk; keeping a base64 string in the table would hold megabytes for an hour.
        spec = job_spec(params)
        job_id = new_job_id()
        job = Job(
            id=job_id,
            params=spec.to_dict(),
            job_dir=self.results_dir / job_id,
            created_at=self.clock.now(),
            owner=owner_id(key),
            observer=self.events.publish,
        )
        if self.store.shared:
            return await self._submit_shared(job, key, source, params.webhook, base_url)
        try:
            await self.store.create(job)
        except QueueFull:
            await self.limits.refund(key)
            raise
        if self.limits.charges_seconds_here(key):
            self._in_background(self._charge_when_final(job, key))
        if params.webhook:
            self.webhooks.watch(job, params.webhook, base_url)
        self.events.publish(job, "queued")
        try:
            job.job_dir.mkdir(parents=True, exist_ok=True)
            if source.inline is not None:
                await self._store_input(job, source.inline)
        except OSError as exc:
            # Fail the job rather than leave it queued forever with no input on disk.
            job.fail(self.clock.now(), f"storing the input image failed: {exc}")
            raise GenerationFailed(f"storing the input image failed: {exc.strerror or exc}") from None
        if source.inline is None:
            fetch = self._in_background(self._fetch_input(job, source.url))
            slot.task = fetch
            fetch.add_done_callback(slot.release)  # even when cancelled before it ever ran
            self._fetches[job.id] = fetch
            fetch.add_done_callback(lambda _, job_id=job.id: self._fetches.pop(job_id, None))
        log.info("job %s queued (%sx%s, %s frames)", job.id, spec.width, spec.height, spec.num_frames)
        return job

    async def _submit_shared(self, job: Job, key: str | None, source, webhook: str | None, base_url: str) -> Job:
        """A shared store's job is queued only with its input in place: any worker host may take it
        at once, and no API replica's background task is left holding it (a URL is fetched now)."""
        try:
            raw = source.inline
            if raw is None:
                raw = await self._download_image(source.url, job.id)
        except InvalidRequest:
            await self.limits.refund(key)
            raise
        try:
            job.input_location = await self.results.save_input(job.id, raw)
        except Exception as exc:  # noqa: BLE001 - a full disk or an unreachable bucket: 500, nothing queued
            await self.limits.refund(key)
            raise GenerationFailed(f"storing the input image failed: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            await self.store.create(job, webhook=(webhook, base_url) if webhook else None)
        except (QueueFull, ServiceUnavailable):
            await self.limits.refund(key)
            await self.results.delete_job(job.id)
            raise
        self.events.publish(job, "queued")
        log.info(
            "job %s queued (%sx%s, %s frames)",
            job.id,
            job.params["width"],
            job.params["height"],
            job.params["num_frames"],
        )
        return job

    async def send_webhooks_forever(self) -> None:
        """With a shared store: deliver the webhooks of jobs that ended anywhere. Every replica reads
        one outbox in a group, so a webhook goes out even when the replica that took the job is gone."""
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        while True:
            try:
                for entry_id, job, url, base in await self.store.webhooks_due(consumer):
                    self._in_background(self._send_webhook(entry_id, job, url, base))
            except Exception as exc:  # noqa: BLE001 - Redis away or one bad read: try again shortly
                if asyncio.current_task().cancelling():
                    raise asyncio.CancelledError from None
                if "NOGROUP" in str(exc):
                    self.store.outbox_lost()
                elif not isinstance(exc, ServiceUnavailable):
                    log.exception("reading the webhook outbox failed")
                await asyncio.sleep(1.0)

    async def _send_webhook(self, entry_id: str, job: Job, url: str, base: str) -> None:
        """Deliver one outbox entry, then acknowledge it, whatever happened: an entry that fails
        every time must not come back every takeover period until its job expires."""
        extra = {"request_id": job.id, "event": "webhook", "status": "error"}
        try:
            body = json.dumps(self.webhooks.build_body(job, base), separators=(",", ":")).encode()
            await self.webhooks.deliver(job.id, url, body)  # retried with backoff; given up is logged
        except Exception:  # noqa: BLE001 - given up, logged with the request id, and acknowledged below
            log.exception("webhook for %s given up: sending it failed", job.id, extra=extra)
        try:
            await self.store.webhook_sent(entry_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the entry is taken over and sent again later
            log.warning("webhook for %s: acknowledging its outbox entry failed (%s)", job.id, exc, extra=extra)

    def _check_prompt_length(self, params: I2VParams) -> None:
        # negative_prompt keeps the fixed 10000-character cap: its default alone is ~100 characters.
        limit = self.settings.max_prompt_chars
        if len(params.prompt) > limit:
            raise InvalidRequest(f"prompt: must be a string of at most {limit} characters; got {len(params.prompt)}")

    async def _charge_when_final(self, job: Job, key: str | None) -> None:
        await job.finished.wait()
        self.limits.charge_seconds(key, job.metrics(self.clock.now())["inference_time"])

    async def _store_input(self, job: Job, raw: bytes) -> None:
        path = job.job_dir / "input.img"
        # Up to --max-image-bytes: written off the event loop so polls are not held up.
        await asyncio.to_thread(path.write_bytes, raw)
        job.image_path = path
        self.store.mark_input_ready(job)

    async def _download_image(self, url: str, job_id: str | None = None) -> bytes:
        """The checked bytes of an image URL; every failure is an InvalidRequest naming ``image``."""
        try:
            raw = await fetch_image_url(
                url,
                max_bytes=self.settings.max_image_bytes,
                timeout=self.settings.image_timeout,
                connect_timeout=self.settings.image_connect_timeout,
                max_redirects=self.settings.image_max_redirects,
                block_private=self.settings.block_private_image_urls,
                resolver=self.resolver,
            )
            await decode_image(raw, self.settings.max_image_pixels)
        except InvalidRequest:
            raise
        except Exception as exc:  # noqa: BLE001 - a failure nobody foresaw is still the input's: a 400
            log.exception("fetching an image URL failed unexpectedly", extra={"request_id": job_id})
            raise InvalidRequest(f"image: cannot be fetched or decoded ({type(exc).__name__})") from None
        return raw

    def input_deadline(self) -> float:
        """Seconds after submission by which a job's input must be on disk, or the job fails."""
        return self.settings.image_timeout + DECODE_TIMEOUT_SECONDS + INPUT_DEADLINE_MARGIN_SECONDS

    async def _fetch_input(self, job: Job, url: str) -> None:
        """Owns a queued job until its input is on disk: whatever happens, the job is then either
        ready to run or FAILED (only a cancellation, which fails the job itself, ends it otherwise)."""
        started = time.monotonic()
        deadline = self.input_deadline()
        try:
            async with asyncio.timeout(deadline):
                raw = await self._download_image(url, job.id)
                job.stage_seconds["image_fetch"] = round(time.monotonic() - started, 3)
                if job.status is JobStatus.QUEUED:  # not cancelled meanwhile
                    await self._store_input(job, raw)
        except InvalidRequest as exc:
            self._fail_if_queued(job, exc.message, FAULT_INPUT)
        except TimeoutError:
            self._fail_if_queued(job, f"image: not ready within {deadline:g} s of submission", FAULT_INPUT)
        except OSError as exc:
            self._fail_if_queued(job, f"storing the input image failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - no exception may leave the job queued forever
            log.exception("job %s: getting its input image failed", job.id, extra={"request_id": job.id})
            self._fail_if_queued(job, f"image: cannot be fetched or stored ({type(exc).__name__})", FAULT_INPUT)

    def _fail_if_queued(self, job: Job, error: str, fault: str | None = None) -> None:
        if job.status is JobStatus.QUEUED:
            job.fail(self.clock.now(), error, *([fault] if fault else []))

    def _in_background(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_if_failed)
        return task

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
        if self.store.shared:
            await self.store.request_cancel(job)
        else:
            self.supervisor.cancel(job)
        fetch = self._fetches.pop(job.id, None)
        if fetch is not None:
            fetch.cancel()
        # A running job stops at its next step, or its worker is killed after the grace period.
        stalled = f"request {job.id} was asked to stop but has not stopped yet; poll it through /v2"
        return await self._final_within(job, self.settings.cancel_grace + 30, stalled)

    async def wait_until_final(self, job: Job, timeout: float) -> Job:
        going_on = f"request {job.id} did not finish within {timeout:g} s; it goes on, poll it through /v2"
        return await self._final_within(job, timeout, going_on)

    async def _final_within(self, job: Job, timeout: float, timed_out_message: str) -> Job:
        try:
            return await self.store.wait_final(job, timeout)
        except asyncio.TimeoutError:
            raise WaitTimedOut(timed_out_message, headers={"x-request-id": job.id}) from None

    # ---- progress ---------------------------------------------------------------------------

    def _learn_duration(self, job: Job, change: str) -> None:
        if change == "completed":
            self.durations.add(job.metrics(self.clock.now())["inference_time"])

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; None once the job has left the queue."""
        if job.status is not JobStatus.QUEUED:
            return None
        if self.store.shared:
            return job.queue_view.position if job.queue_view is not None else None
        ahead = sum(
            1
            for other in self.store.all_jobs()
            if other.status is JobStatus.QUEUED and (other.created_at, other.id) < (job.created_at, job.id)
        )
        return ahead + 1

    def progress_fields(self, job: Job) -> dict:
        """The fields this server adds to Segmind's status body: progress, stage, steps, queue, ETA."""
        now = self.clock.now()
        position = self.queue_position(job)
        if job.status is JobStatus.PROCESSING:
            eta = eta_seconds(job.progress, now - (job.started_at or now))
        elif position is not None and self._average_duration(job) is not None:
            # Jobs ahead leave in rounds, one per worker: this one ends after ceil(position / workers)
            # generations, the first of them the wait for a running job to end.
            rounds = math.ceil(position / max(1, self._worker_count(job)))
            eta = round(self._average_duration(job) * rounds + self._running_job_eta(now), 1)
        elif job.status.is_final:
            eta = 0.0
        else:
            eta = None
        return {
            "progress": round(job.progress, 4),
            "stage": "queued" if job.status is JobStatus.QUEUED else job.stage,
            "step": job.step,
            "total_steps": job.total_steps,
            "queue_position": position,
            "eta_seconds": eta,
        }

    def _average_duration(self, job: Job) -> float | None:
        if self.store.shared:
            return job.queue_view.average_seconds if job.queue_view is not None else None
        return self.durations.average

    def _worker_count(self, job: Job) -> int:
        if self.store.shared:
            return job.queue_view.workers if job.queue_view is not None else 1
        return len(self.supervisor.workers)

    def _running_job_eta(self, now: float) -> float:
        if self.store.shared:
            return 0.0  # running jobs are on worker hosts; the queue position alone sizes the wait
        for other in self.store.all_jobs():
            if other.status is JobStatus.PROCESSING:
                left = eta_seconds(other.progress, now - (other.started_at or now))
                return left if left is not None else (self.durations.average or 0.0)
        return 0.0

    async def output_file(self, job_id: str, token: str) -> Path | str:
        """The finished video of a job: a file to send, or (a bucket's) URL to redirect to."""
        job = await self.store.find(job_id)
        if self.results is not None:
            if job is None or job.output_location is None or not _same_token(token, job.output_token):
                raise JobNotFound(job_id)
            local = self.results.local_file(job.output_location)
            return local if local is not None else self.output_url(job, "")
        if job is None or job.output_path is None or not _same_token(token, job.output_token):
            raise JobNotFound(job_id)
        if not job.output_path.is_file():
            raise OutputGone(f"the video of request {job_id} is no longer in the results directory")
        return job.output_path

    async def finished_video(self, job: Job):
        """A COMPLETED job's video for the blocking route: a Path, or a bucket's byte stream."""
        if self.results is not None and job.output_location is not None:
            try:
                local = self.results.local_file(job.output_location)
                return local if local is not None else await self.results.open_output(job.output_location)
            except OutputGone as exc:
                raise GenerationFailed(exc.message) from None
        if job.output_path is None or not job.output_path.is_file():
            raise GenerationFailed(f"the video of request {job.id} is no longer in the results directory")
        return job.output_path

    def output_url(self, job: Job, base: str) -> str:
        """Where a client downloads the job's video: this API (under `base`) or a presigned bucket URL."""
        if self.results is not None and job.output_location is not None:
            return self.results.output_url(job.id, job.output_location, job.output_token, base)
        return api_output_url(job.id, job.output_token, base)

    def output_size(self, job: Job) -> int | None:
        if job.output_size is not None:
            return job.output_size
        try:
            return job.output_path.stat().st_size if job.output_path is not None else None
        except OSError:
            return None

    # ---- retention --------------------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Delete the files of expired jobs (a shared store's records expire in Redis itself), then
        fail the jobs that never ended: still QUEUED one TTL after submission, or (in memory) still
        waiting for their input past ``input_deadline``. Failed now, they expire at the next sweep."""
        if self.store.shared:
            expired_ids = await self.store.take_expired(self.clock.now())
            for job_id in expired_ids:
                await self.results.delete_job(job_id)
            if expired_ids:
                log.info("expired %d jobs", len(expired_ids))
            submitted_before = self.clock.now() - self.settings.ttl_seconds
            overdue = await self.store.fail_overdue(submitted_before, self._expiry_message())
            if overdue:
                log.warning("failed %d jobs still queued one TTL after submission", overdue)
            return len(expired_ids)
        else:
            expired = self.store.remove_expired(self.clock.now(), self.settings.ttl_seconds)
            expired_dirs = [job.job_dir for job in expired]
            self._fail_overdue()
        for job_dir in expired_dirs:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
        if expired_dirs:
            log.info("expired %d jobs", len(expired_dirs))
        return len(expired_dirs)

    def _expiry_message(self) -> str:
        ttl = self.settings.ttl_seconds
        return f"expired: still queued {ttl:g} s after submission (the retention period); submit it again"

    def _fail_overdue(self) -> None:
        now = self.clock.now()
        for job in self.store.all_jobs():
            if job.status is not JobStatus.QUEUED:
                continue  # a running job is bounded by --job-timeout
            age = now - job.created_at
            if age >= self.settings.ttl_seconds:
                log.warning("job %s: still queued one TTL after submission; failing it", job.id)
                job.fail(now, self._expiry_message(), FAULT_EXPIRED)
            elif not job.input_ready and age >= self.input_deadline() + self.settings.sweep_interval:
                log.warning("job %s: its input never became ready; failing it", job.id)
                job.fail(now, f"image: not ready within {self.input_deadline():g} s of submission", FAULT_INPUT)
            else:
                continue
            fetch = self._fetches.pop(job.id, None)
            if fetch is not None:
                fetch.cancel()

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep_expired()
            except Exception:  # noqa: BLE001 - a failed sweep must not stop the next one
                log.exception("sweeping expired jobs failed")

    async def drain(self, grace: float) -> None:
        """Graceful shutdown: refuse new jobs, fail the queued ones, give running ones ``grace`` seconds."""
        self.accepting = False
        if self.store.shared:
            return  # queued jobs stay queued for the other replicas' workers; nothing runs here
        now = self.clock.now()
        for job in self.store.all_jobs():
            if job.status is JobStatus.QUEUED:
                job.fail(
                    now, "the server is shutting down: this job never started; submit it again later", FAULT_SHUTDOWN
                )
        running = [job for job in self.store.all_jobs() if job.status is JobStatus.PROCESSING]
        log.info("shutting down: refusing new jobs, waiting up to %g s for %d running", grace, len(running))
        if running:
            waits = [asyncio.ensure_future(job.finished.wait()) for job in running]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for waiter in pending:
                waiter.cancel()
        for job in running:
            if not job.status.is_final:
                log.warning("job %s did not finish within the %g s shutdown grace period; failing it", job.id, grace)
                job.fail(
                    self.clock.now(),
                    f"the server is shutting down: this job did not finish within the {grace:g} s grace period",
                    FAULT_SHUTDOWN,
                )
        if running:
            # Pollers of those jobs get a moment to read how they ended before the listener closes.
            await asyncio.sleep(SHUTDOWN_LINGER_SECONDS)

    async def close(self) -> None:
        self.accepting = False
        self.events.close()
        await self.webhooks.close()
        for task in list(self._background):
            task.cancel()


def _same_token(presented: str, expected: str | None) -> bool:
    """Constant-time comparison of bytes: compare_digest refuses str with non-ASCII characters."""
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def _log_if_failed(task: asyncio.Task) -> None:
    """A background task's exception is logged at once (not as "Task exception was never retrieved")."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
