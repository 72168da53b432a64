"""Submission: checks a request, admits it against the caller's limits, and hands the job with its
image to the store (``JobStore.create``), which stores the image now or has it fetched in the
background; a background fetch owns its queued job until the input is stored, or fails the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from pipelines.inputs import pack_inputs
from pipelines.interface import JobSpec
from server.clock import Clock
from server.errors import InvalidRequest, ServiceError
from server.jobs import images
from server.jobs.events import JobEventHub
from server.jobs.limits import owner_id
from server.jobs.netguard import Resolver, check_url
from server.jobs.record import Job, JobStatus, new_job_id
from server.jobs.store import InputIntake, JobStore
from server.jobs.webhooks import WebhookSender
from server.settings import Settings
from server.workers.messages import FAULT_INPUT

log = logging.getLogger("ltx2.service")

# Beyond the fetch and decode bounds, time for writing the input to disk before a job whose input is
# still not ready fails.
INPUT_DEADLINE_MARGIN_SECONDS = 10.0


class Background:
    """Tasks the service runs beside the requests: cancelled on close; an exception is logged at once."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_log_if_failed)
        return task

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class Intake:
    def __init__(
        self, settings: Settings, store: JobStore, clock: Clock, limits, events: JobEventHub,
        webhooks: WebhookSender, background: Background,
    ) -> None:  # fmt: skip
        self.settings, self.store, self.clock, self.limits = settings, store, clock, limits
        self.events, self.webhooks, self.background = events, webhooks, background
        # Tests swap in a resolver to show what DNS answers are refused; None is the system's.
        self.resolver: Resolver | None = None
        # Image downloads in flight, by job id: a job that ends (cancelled, expired) stops its download.
        self.fetches: dict[str, asyncio.Task] = {}
        self.fetch_slots = images.FetchSlots(settings.max_image_fetches)
        # The server's LoRAs by name (--loras), read once: requests are checked against them here.
        self.lora_names: frozenset[str] = frozenset()

    async def submit(
        self, spec: JobSpec, image: str | None, webhook: str | None, key: str | None, base_url: str,
        keyframe_images: Sequence[str] = (),
    ) -> Job:  # fmt: skip
        """Queue a job; `base_url` is where the submitter reached us (for absolute URLs in its webhook).
        ``image`` is None for text-to-video; ``keyframe_images`` has one image per ``spec.keyframes``."""
        self.check_request(spec)
        if webhook:
            self.webhooks.require_secret()
        if spec.has_input_bundle:
            # Every image is fetched and checked now, and the job stores them as one bundle (pipelines/inputs.py).
            bundle = await self._bundle_of(image, keyframe_images)
            return await self._accept(spec, (webhook, base_url) if webhook else None, key, bundle, None)
        source = images.classify_image_source(image or "", self.settings.max_image_bytes)
        if source.inline is not None:
            await images.decode_image(source.inline, self.settings.max_image_pixels)
        else:
            # Scheme and address are checked now, so a refused URL is a 400 at once; redirects
            # are only seen while fetching, and a refused one fails the job (fault: input).
            await self._check_image_url(source.url or "")
        # Held until the download ends (by a background fetch, when the store has one).
        slot = self.fetch_slots.take() if source.url is not None else None
        try:
            return await self._accept(spec, (webhook, base_url) if webhook else None, key, source, slot)
        finally:
            if slot is not None and slot.task is None:
                slot.release()

    def check_request(self, spec: JobSpec) -> None:
        """What this server's settings allow of a request, beyond its fields' own ranges (no I/O)."""
        # negative_prompt keeps the fixed 10000-character cap: its default alone is ~100 characters.
        limit = self.settings.max_prompt_chars
        if len(spec.prompt) > limit:
            raise InvalidRequest(f"prompt: must be a string of at most {limit} characters; got {len(spec.prompt)}")
        self.check_features(spec)
        self.check_loras(spec)

    def check_features(self, spec: JobSpec) -> None:
        """The fields beyond Segmind's that the served generation takes (pipelines/generations.py)."""
        served = self.settings.served_generation()
        if served is None:
            return  # an API replica of a shared store, or a custom generator: the worker decides
        asked = {"keyframes": bool(spec.keyframes), "loras": bool(spec.loras), "enhance_prompt": spec.enhance_prompt}
        for name, wanted in asked.items():
            if wanted and name not in served.request_features:
                raise InvalidRequest(f"{name}: not offered by {served.title}, which this server runs; send none")

    def check_loras(self, spec: JobSpec) -> None:
        """Each requested LoRA is one of the server's (--loras)."""
        if not spec.loras:
            return
        available = self.lora_names
        if not available:
            raise InvalidRequest("loras: no LoRAs are loaded here (start with --loras DIR); send none")
        for index, lora in enumerate(spec.loras):
            if lora.name not in available:
                listed = ", ".join(sorted(available))
                raise InvalidRequest(
                    f"loras[{index}].name: must be one of the server's LoRAs ({listed}); got {lora.name!r}"
                )

    async def _check_image_url(self, url: str) -> None:
        await check_url(
            url,
            block_private=self.settings.block_private_image_urls,
            timeout=self.settings.image_connect_timeout,
            resolver=self.resolver,
        )

    async def _bundle_of(self, image: str | None, keyframe_images: Sequence[str]) -> images.ImageSource:
        named = ([("image", image)] if image is not None else []) + [
            (f"keyframes[{index}].image", value) for index, value in enumerate(keyframe_images)
        ]
        # A download slot per URL, as for a single image (the slots bound the bytes held in downloads), but never
        # more than there are: a request with more URLs than --max-image-fetches would otherwise never pass.
        wanted = min(sum(_is_url(value) for _, value in named), self.fetch_slots.limit)
        slots: list[images.FetchSlot] = []
        try:
            for _ in range(wanted):
                slots.append(self.fetch_slots.take())
            raws = await asyncio.gather(*(self._image_now(value, field) for field, value in named))
        finally:
            for slot in slots:
                slot.release()
        first = raws[0] if image is not None else None
        return images.ImageSource(inline=pack_inputs(first, raws[1:] if image is not None else raws))

    async def _image_now(self, value: str, field: str) -> bytes:
        """The checked bytes of one of the request's images; an error names ``field``."""
        try:
            source = images.classify_image_source(value, self.settings.max_image_bytes)
            if source.inline is not None:
                await images.decode_image(source.inline, self.settings.max_image_pixels)
                return source.inline
            await self._check_image_url(source.url or "")
            return await self.download_image(source.url or "")
        except InvalidRequest as exc:
            raise InvalidRequest(_renamed(exc.message, field), exc.headers) from None

    async def _accept(
        self, spec: JobSpec, webhook: tuple[str, str] | None, key, source: images.ImageSource,
        slot: images.FetchSlot | None,
    ) -> Job:  # fmt: skip
        await self.limits.admit(key)
        # The image itself goes to the results storage; keeping a base64 string in the table would hold megabytes.
        job = Job(id=new_job_id(), params=spec, created_at=self.clock.now(), owner=owner_id(key))
        job.live.observer = self.events.publish
        url = source.url or ""
        intake = InputIntake(
            source.inline,
            fetch_now=lambda: self.download_image(url, job.id),
            fetch_later=lambda job, store_it: self._fetch_later(job, url, slot, store_it),
        )
        try:
            await self.store.create(job, webhook, intake)
        except ServiceError:
            await self.limits.refund(key)
            raise
        if self.limits.charges_seconds_here(key):
            self.background.spawn(self._charge_when_final(job, key))
        self.events.publish(job, "queued")
        log.info("job %s queued (%sx%s, %s frames)", job.id, spec.width, spec.height, spec.num_frames)
        return job

    async def _charge_when_final(self, job: Job, key: str | None) -> None:
        await job.finished.wait()
        self.limits.charge_seconds(key, job.metrics(self.clock.now())["inference_time"])

    def on_job_change(self, job: Job, change: str) -> None:
        """A JobEventHub listener: a job that ended (cancelled, expired) needs its image no more."""
        fetch = self.fetches.get(job.id) if job.status.is_final else None
        if fetch is not None and fetch is not asyncio.current_task():
            self.fetches.pop(job.id, None)
            fetch.cancel()

    async def download_image(self, url: str, job_id: str | None = None) -> bytes:
        """The checked bytes of an image URL; every failure is an InvalidRequest naming ``image``."""
        try:
            raw = await images.fetch_image_url(url, self.settings, self.resolver)
            await images.decode_image(raw, self.settings.max_image_pixels)
        except InvalidRequest:
            raise
        except Exception as exc:  # noqa: BLE001 - a failure nobody foresaw is still the input's: a 400
            log.exception("fetching an image URL failed unexpectedly", extra={"request_id": job_id})
            raise InvalidRequest(f"image: cannot be fetched or decoded ({type(exc).__name__})") from None
        return raw

    def input_deadline(self) -> float:
        """Seconds after submission by which a job's input must be stored, or the job fails."""
        return self.settings.image_timeout + images.DECODE_TIMEOUT_SECONDS + INPUT_DEADLINE_MARGIN_SECONDS

    def _fetch_later(self, job: Job, url: str, slot: images.FetchSlot | None, store_it) -> None:
        fetch = self.background.spawn(self._fetch_input(job, url, store_it))
        if slot is not None:
            slot.task = fetch
            fetch.add_done_callback(slot.release)  # even when cancelled before it ever ran
        self.fetches[job.id] = fetch
        fetch.add_done_callback(lambda _task: self.fetches.pop(job.id, None))

    async def _fetch_input(self, job: Job, url: str, store_it) -> None:
        """Owns a queued job until its input is stored: whatever happens, the job is then either
        ready to run or FAILED (only a cancellation, which fails the job itself, ends it otherwise)."""
        started = time.monotonic()
        deadline = self.input_deadline()
        try:
            async with asyncio.timeout(deadline):
                raw = await self.download_image(url, job.id)
                job.stage_seconds["image_fetch"] = round(time.monotonic() - started, 3)
                if job.status is JobStatus.QUEUED:  # not cancelled meanwhile
                    await store_it(raw)
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


def _is_url(value: str) -> bool:
    return value.strip()[:8].lower().startswith(("http://", "https://"))


def _renamed(message: str, field: str) -> str:
    """An image error ("image: ...") about another of the request's images."""
    return field + message[len("image") :] if message.startswith("image:") else f"{field}: {message}"


def _log_if_failed(task: asyncio.Task) -> None:
    """A background task's exception is logged at once (not as "Task exception was never retrieved")."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
