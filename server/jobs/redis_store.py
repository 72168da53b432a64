"""Job records, the queue, limits and the worker registry in Redis, shared by API replicas and worker
hosts (``--store redis://HOST:PORT/DB``). Every key starts with ``ltx2:``:
- ``job:{id}``: a hash per job. Redis expires it one TTL after submission (set when the job becomes
  final); the API replicas' sweep fails a job still QUEUED by then (``fail_overdue``).
- ``queue``: a stream read by idle workers in the group ``ltx2-workers``, one entry per job, pending
  until the job is final. A worker host keeps touching the entries it holds; one left untouched past
  the visibility timeout belongs to a dead worker, and the next idle worker claims it (``XAUTOCLAIM``).
- ``queued``: the ids still QUEUED, by submission time (depth, position, cap); ``expiries``: final ids
  by the time their record expires, so a sweeper can delete their files.
- ``rate:{owner}``, ``credits:{owner}``: per-key limits; ``worker:{name}`` and ``workers``: for /ready.

Every status change is a Lua script that checks the current status (and, for a worker, that it still
holds the job's current delivery): a worker presumed dead whose job was redelivered cannot complete it
a second time. This module is the API replicas' side; server/workers/redis_work.py the worker hosts'.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipelines.interface import JobSpec
from server.clock import Clock
from server.errors import GenerationFailed, QueueFull, ServiceError, StoreUnavailable
from server.jobs.limits import RATE_WINDOW_SECONDS, KeyPolicy, credits_spent, owner_id, rate_limited
from server.jobs.progress import DURATION_SMOOTHING, ProgressTracker
from server.jobs.record import NO_QUEUE_VIEW, Job, JobLive, JobStatus, QueueView
from server.jobs.store import SHUTTING_DOWN, InputIntake, WebhookDue
from server.observability.metrics import SharedStoreGauges
from server.storage.results import ResultStorage
from server.workers.messages import FAULT_EXPIRED

log = logging.getLogger("ltx2.redis")

QUEUE_STREAM = "ltx2:queue"
CONSUMER_GROUP = "ltx2-workers"
QUEUED_SET = "ltx2:queued"
EXPIRIES_SET = "ltx2:expiries"
WORKERS_SET = "ltx2:workers"
STATS_KEY = "ltx2:stats"
# Final jobs with a webhook; every API replica reads it in one group, so a delivery survives the
# replica that accepted the job.
WEBHOOK_OUTBOX = "ltx2:webhooks"
WEBHOOK_GROUP = "ltx2-api"
# A webhook entry read by a replica that then died is taken over after this long.
WEBHOOK_TAKEOVER_SECONDS = 120.0
# A worker not heard of for this long is not counted as taking jobs (it reports every 2 s at most).
WORKER_STALE_SECONDS = 10.0
# A final record past its TTL is kept at least this long, so its last poll can still read it.
MIN_FINAL_LIFETIME = 1.0
POLL_INTERVAL = 0.1
WORKER_COMMAND = "ltx2-server worker --store ..."
UNREACHABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def job_key(job_id: str) -> str:
    return f"ltx2:job:{job_id}"


def credits_key(owner: str) -> str:
    return f"ltx2:credits:{owner}"


def worker_key(name: str) -> str:
    return f"ltx2:worker:{name}"


def connect(url: str) -> Any:
    """Typed Any: redis-py's annotations cannot express decode_responses=True (every reply is a str)."""
    # Short timeouts: an unreachable Redis must turn into a prompt 503, not a hung request. A pooled
    # connection that Redis dropped (it restarted) is retried on a fresh one; the scripts that change
    # state are idempotent, so a retry after a lost answer does not apply them twice.
    return aioredis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )  # fmt: skip


def describe_url(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def stop_if_cancelled() -> None:
    """redis-py may turn a cancellation in mid-command into a connection error; a retry loop that
    catches those must not swallow the cancellation with it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# KEYS[1] job, KEYS[2] expiries, KEYS[3] queued in every script that can finish a job.
_FINALIZE = """
local function finalize(id, status, now)
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now, 'stage', string.lower(status))
  local expire_at = tonumber(redis.call('HGET', KEYS[1], 'expire_at'))
  local earliest = tonumber(now) + %(min_life)s
  if expire_at < earliest then expire_at = earliest end
  redis.call('PEXPIREAT', KEYS[1], math.floor(expire_at * 1000))
  redis.call('ZADD', KEYS[2], expire_at, id)
  redis.call('ZREM', KEYS[3], id)
  if redis.call('HEXISTS', KEYS[1], 'webhook') == 1 then
    redis.call('XADD', '%(outbox)s', '*', 'job', id)
  end
end
local function fail(id, now, error, fault)
  redis.call('HSET', KEYS[1], 'error', error, 'fault', fault)
  finalize(id, 'FAILED', now)
end
""" % {"min_life": MIN_FINAL_LIFETIME, "outbox": WEBHOOK_OUTBOX}

# ARGV: id, max_queue, created_at, then field/value pairs. KEYS[4] the stream.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'job', ARGV[1])
return 1
"""

# A worker takes a delivered job. ARGV: id, worker, now, max_deliveries.
_START = (
    _FINALIZE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
if status == 'COMPLETED' or status == 'FAILED' then return {'final', status} end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  fail(ARGV[1], ARGV[3], 'cancelled', 'cancelled')
  return {'final', 'FAILED'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
if attempt > tonumber(ARGV[4]) then
  fail(ARGV[1], ARGV[3],
    'the worker running this job was lost ' .. (attempt - 1) .. ' times (it died or stopped answering); '
    .. 'gave up after ' .. ARGV[4] .. ' deliveries', 'generation')
  return {'final', 'FAILED'}
end
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'PROCESSING', 'worker', ARGV[2], 'stage', 'starting')
redis.call('ZREM', KEYS[3], ARGV[1])
return {'started', tostring(attempt)}
"""
)

# ARGV: attempt, stage, step, total_steps, progress. Returns 1 when the job was asked to cancel,
# 0 when not, -1 when this delivery no longer holds the job.
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') ~= 'PROCESSING' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then
  return -1
end
local progress = tonumber(ARGV[5])
local before = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
if before > progress then progress = before end
redis.call('HSET', KEYS[1], 'stage', ARGV[2], 'step', ARGV[3], 'total_steps', ARGV[4], 'progress', progress)
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 1 end
return 0
"""

# A worker finishes the delivery it holds. ARGV: id, attempt, now, status, gpu_seconds, then
# field/value pairs. KEYS[4] the owner's credits hash ('' when the job has no owner).
_FINISH = (
    _FINALIZE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
local ours = redis.call('HGET', KEYS[1], 'attempt') == ARGV[2]
if ours and (status == 'COMPLETED' or status == 'FAILED') and redis.call('HGET', KEYS[1], 'finished_by') == ARGV[2] then
  return 'ok'  -- this very write, retried after its answer was lost
end
if status ~= 'PROCESSING' or not ours then return status end
redis.call('HSET', KEYS[1], 'finished_by', ARGV[2])
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
finalize(ARGV[1], ARGV[4], ARGV[3])
if KEYS[4] ~= '' then redis.call('HINCRBYFLOAT', KEYS[4], 'gpu_seconds', ARGV[5]) end
if ARGV[4] == 'COMPLETED' then
  -- A moving average of generation time, for the ETA of queued jobs on every replica.
  local average = tonumber(redis.call('HGET', KEYS[5], 'average_seconds') or '-1')
  local seconds = tonumber(ARGV[5])
  if average >= 0 then seconds = average + %(smoothing)s * (seconds - average) end
  redis.call('HSET', KEYS[5], 'average_seconds', seconds)
end
return 'ok'
"""
    % {"smoothing": DURATION_SMOOTHING}
)

# A worker host that stops gracefully gives a job back. ARGV: attempt. The delivery is not counted
# against --max-deliveries: the job did nothing wrong.
_HAND_BACK = """
if redis.call('HGET', KEYS[1], 'status') ~= 'PROCESSING' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'attempt', -1)
redis.call('HSET', KEYS[1], 'stage', 'requeued', 'worker', '')
return 1
"""

# A worker's supervisor took a job but its child died before starting it. ARGV: id, attempt. The job goes
# back to QUEUED in its place (by submission time), the delivery uncounted, as the in-memory store does.
_PUT_BACK = """
if redis.call('HGET', KEYS[1], 'status') ~= 'PROCESSING' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then
  return 0
end
if redis.call('HINCRBY', KEYS[1], 'attempt', -1) == 0 then redis.call('HDEL', KEYS[1], 'started_at') end
redis.call('HSET', KEYS[1], 'status', 'QUEUED', 'stage', 'queued', 'worker', '')
redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'created_at'), ARGV[1])
return 1
"""

# The API cancels. ARGV: id, now. A queued job fails at once; a running one is flagged for its worker.
_CANCEL = (
    _FINALIZE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'QUEUED' then
  fail(ARGV[1], ARGV[2], 'cancelled', 'cancelled')
  return 'FAILED'
end
if status == 'PROCESSING' then redis.call('HSET', KEYS[1], 'cancel', '1') end
return status
"""
)

# The sweep fails a job still queued past its retention: its own, set by the replica that accepted it
# (replicas may run with different --ttl-seconds). ARGV: id, now, error.
_EXPIRE_QUEUED = (
    _FINALIZE
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'QUEUED' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
local expire_at = tonumber(redis.call('HGET', KEYS[1], 'expire_at'))
if expire_at and expire_at > tonumber(ARGV[2]) then return 0 end
fail(ARGV[1], ARGV[2], ARGV[3], '%(fault)s')
return 1
"""
    % {"fault": FAULT_EXPIRED}
)


def record_of(job: Job, expire_at: float) -> dict[str, str]:
    return {
        "id": job.id,
        "params": json.dumps(job.params.to_dict()),
        "owner": job.owner or "",
        "status": job.status.value,
        "created_at": repr(job.created_at),
        "expire_at": repr(expire_at),
        "input": job.input or "",
        "output_token": job.output_token,
        **dict(stage="queued", step="0", total_steps="0", progress="0", attempt="0"),
    }


# The record's optional fields ("" when unset), read back as strings or as numbers.
_TEXTS = ("owner", "input", "error", "fault", "output", "enhanced_prompt")
_NUMBERS = {"started_at": float, "finished_at": float, "output_size": int, "seed": int}


def job_from_record(record: dict[str, str], delivered: bool = False) -> Job:
    """A snapshot of the job as Redis holds it now (changes to it are not written back); ``delivered``:
    a worker's own view of a job it was handed, QUEUED until its supervisor starts it."""
    optional: dict[str, Any] = {name: record.get(name) or None for name in _TEXTS}
    optional.update({name: kind(record[name]) if record.get(name) else None for name, kind in _NUMBERS.items()})
    optional.update({name: int(record.get(name) or 0) for name in ("step", "total_steps", "attempt")})
    job = Job(
        id=record["id"],
        params=JobSpec.from_dict(json.loads(record["params"])),
        created_at=float(record["created_at"]),
        status=JobStatus.QUEUED if delivered else JobStatus(record["status"]),
        output_token=record["output_token"],
        stage=record.get("stage", "queued"),
        stage_seconds=json.loads(record["stage_seconds"]) if record.get("stage_seconds") else {},
        live=JobLive(tracker=ProgressTracker(progress=0.0 if delivered else float(record.get("progress") or 0.0))),
        **optional,
    )
    if job.status.is_final:
        job.finished.set()
    return job


class RedisScripts:
    def __init__(self, client: aioredis.Redis) -> None:
        self.create = client.register_script(_CREATE)
        self.start = client.register_script(_START)
        self.progress = client.register_script(_PROGRESS)
        self.finish = client.register_script(_FINISH)
        self.cancel = client.register_script(_CANCEL)
        self.hand_back = client.register_script(_HAND_BACK)
        self.put_back = client.register_script(_PUT_BACK)
        self.expire_queued = client.register_script(_EXPIRE_QUEUED)


def transition_keys(job_id: str) -> list[str]:
    return [job_key(job_id), EXPIRIES_SET, QUEUED_SET]


async def ensure_consumer_group(client: Any, stream: str = QUEUE_STREAM, group: str = CONSUMER_GROUP) -> None:
    """From the start of the stream, so nothing queued before the group existed is skipped."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class RedisJobStore:
    """The ``JobStore`` of API replicas: jobs live in Redis, with their input in place; no worker runs here."""

    def __init__(
        self, url: str, results: ResultStorage, clock: Clock, max_queue: int, ttl_seconds: float,
        stale_after: float = WORKER_STALE_SECONDS,
    ) -> None:  # fmt: skip
        self.url = url
        self.client = connect(url)
        self.scripts = RedisScripts(self.client)
        self.results = results
        self._stale_after = stale_after
        self.clock = clock
        self._max_queue = max_queue
        self._ttl = ttl_seconds
        self._outbox_ready = False

    def unreachable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"the job store (Redis at {describe_url(self.url)}) is unreachable: {exc}; retry later")

    async def open(self) -> None:
        try:
            await ensure_consumer_group(self.client)
        except UNREACHABLE_ERRORS as exc:
            # Not fatal: the API answers 503 until Redis is back; workers create the group too.
            log.error("%s", self.unreachable(exc).message)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, *UNREACHABLE_ERRORS):
            return False

    async def create(self, job: Job, webhook: tuple[str, str] | None, intake: InputIntake) -> None:
        """A URL is fetched now: no API replica's background task is left holding a queued job."""
        raw = intake.inline if intake.inline is not None else await intake.fetch_now()
        try:
            job.input = await self.results.save_input(job.id, raw)
        except Exception as exc:  # noqa: BLE001 - a full disk or an unreachable bucket: 500, nothing queued
            raise GenerationFailed(f"storing the input image failed: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            await self.queue(job, webhook)
        except ServiceError:
            await self.results.delete_job(job.id)
            raise

    async def queue(self, job: Job, webhook: tuple[str, str] | None = None) -> None:
        fields = record_of(job, expire_at=job.created_at + self._ttl)
        if webhook is not None:
            fields.update(webhook=webhook[0], webhook_base=webhook[1])
        pairs = [item for pair in fields.items() for item in pair]
        try:
            added = await self.scripts.create(
                keys=[*transition_keys(job.id), QUEUE_STREAM],
                args=[job.id, self._max_queue, repr(job.created_at), *pairs],
            )
        except UNREACHABLE_ERRORS as exc:
            raise self.unreachable(exc) from None
        if not added:
            raise QueueFull(
                f"queue is full ({self._max_queue} jobs waiting); retry later", headers={"Retry-After": "5"}
            )

    async def find(self, job_id: str) -> Job | None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(job_key(job_id))
                pipe.zrank(QUEUED_SET, job_id)
                pipe.hget(STATS_KEY, "average_seconds")
                pipe.zcount(WORKERS_SET, self.clock.now() - WORKER_STALE_SECONDS, "+inf")
                record, rank, average, workers = await pipe.execute()
        except UNREACHABLE_ERRORS as exc:
            raise self.unreachable(exc) from None
        if not record or "status" not in record:
            return None
        job = job_from_record(record)
        position = rank + 1 if rank is not None and job.status is JobStatus.QUEUED else None
        job.live.queue_view = QueueView(position, float(average) if average else None, int(workers or 0))
        return job

    async def wait_final(self, job: Job, timeout: float) -> Job:
        deadline = time.monotonic() + timeout
        pause = POLL_INTERVAL / 2
        while True:
            current = await self.find(job.id)
            if current is None:
                return job  # expired meanwhile: the last snapshot is all there is
            if current.status.is_final:
                return current
            if time.monotonic() >= deadline:
                raise asyncio.TimeoutError
            # Short jobs are noticed quickly; long ones cost Redis a read every half second.
            await asyncio.sleep(min(pause, max(0.01, deadline - time.monotonic())))
            pause = min(POLL_INTERVAL * 5, pause * 1.5)

    async def changes(self, job: Job) -> AsyncIterator[Job]:
        seen = None
        while True:
            current = await self.find(job.id)
            if current is None:
                return
            shown = (current.status, current.stage, current.step, current.total_steps, current.live.queue_view)
            if shown != seen:
                seen = shown
                yield current
            if current.status.is_final:
                return
            await asyncio.sleep(POLL_INTERVAL * 2.5)

    async def cancel(self, job: Job) -> None:
        await self.request_cancel(job)

    async def request_cancel(self, job: Job) -> str:
        """QUEUED jobs fail at once; a PROCESSING one is flagged and its worker stops it; the status."""
        try:
            return await self.scripts.cancel(keys=transition_keys(job.id), args=[job.id, repr(self.clock.now())])
        except UNREACHABLE_ERRORS as exc:
            raise self.unreachable(exc) from None

    def queue_view(self, job: Job) -> QueueView:
        # Running jobs are on worker hosts: the queue position alone sizes the wait.
        return job.live.queue_view or NO_QUEUE_VIEW

    def attach(self, events) -> None:
        return None  # changes are written by the worker hosts' scripts and read back by ``changes``

    async def drain(self, grace: float, reason: str = SHUTTING_DOWN) -> None:
        return None  # queued jobs stay queued for the other replicas' workers; nothing runs here

    async def depth(self) -> int:
        try:
            return int(await self.client.zcard(QUEUED_SET))
        except UNREACHABLE_ERRORS as exc:
            raise self.unreachable(exc) from None

    async def take_expired(self, now: float) -> list[str]:
        """Ids whose records Redis has expired (or is about to), each returned to one caller only."""
        ids = await self.client.zrangebyscore(EXPIRIES_SET, "-inf", now, start=0, num=500)
        taken = []
        for job_id in ids:
            # Several replicas sweep: ZREM answers 1 to exactly one of them.
            if await self.client.zrem(EXPIRIES_SET, job_id):
                taken.append(job_id)
        return taken

    async def fail_overdue(self, now: float, error: str, input_deadline: float = 0.0, margin: float = 0.0) -> int:
        """One replica fails each job (the script checks its status); a job's input is in place before it is queued."""
        ids = await self.client.zrangebyscore(QUEUED_SET, "-inf", now - self._ttl, start=0, num=500)
        failed = 0
        for job_id in ids:
            args = [job_id, repr(self.clock.now()), error]
            failed += int(await self.scripts.expire_queued(keys=transition_keys(job_id), args=args))
        return failed

    async def webhooks_due(self, consumer: str, block: float = 1.0) -> list[WebhookDue]:
        """An entry stays pending until ``webhook_sent``: one that a replica read and died with goes to another."""
        if not self._outbox_ready:
            await ensure_consumer_group(self.client, WEBHOOK_OUTBOX, WEBHOOK_GROUP)
            self._outbox_ready = True
        try:
            _, entries, _ = await self.client.xautoclaim(
                WEBHOOK_OUTBOX, WEBHOOK_GROUP, consumer, min_idle_time=int(WEBHOOK_TAKEOVER_SECONDS * 1000), count=10
            )
            if not entries:
                answer = await self.client.xreadgroup(
                    WEBHOOK_GROUP, consumer, {WEBHOOK_OUTBOX: ">"}, count=10, block=int(block * 1000)
                )
                entries = [entry for _, stream_entries in answer or [] for entry in stream_entries]
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._outbox_ready = False  # Redis restarted without its data: made again on the next read
            return []
        due = []
        for entry_id, fields in entries:
            job = await self.find(fields.get("job", "")) if fields else None
            url, base = await self.client.hmget(job_key(job.id), "webhook", "webhook_base") if job else (None, None)
            if job is None or not url or not job.status.is_final:
                await self.webhook_sent(entry_id)  # expired meanwhile: nothing to send
                continue
            due.append((entry_id, job, url, base or ""))
        return due

    async def webhook_sent(self, entry_id: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(WEBHOOK_OUTBOX, WEBHOOK_GROUP, entry_id)
            pipe.xdel(WEBHOOK_OUTBOX, entry_id)
            await pipe.execute()

    async def readiness(self) -> dict:
        """Ready when Redis answers and some worker host has a worker that takes jobs."""
        body: dict = {"ready": False, "store": "redis", "store_reachable": await self.ping()}
        if body["store_reachable"]:
            try:
                workers = await self.live_workers(self.clock.now(), self._stale_after)
                body["queued"] = await self.depth()
            except ServiceError as exc:
                body["error"] = exc.message
                workers = []
            body["workers"] = workers
            body["ready"] = any(worker.get("state") in ("ready", "busy") for worker in workers)
            if not workers:
                body["error"] = f"no worker host is connected to the store (start one with `{WORKER_COMMAND}`)"
        else:
            body["error"] = f"the job store (Redis at {self.url.split('@')[-1]}) is unreachable"
        return body

    def gauges(self) -> SharedStoreGauges:
        return SharedStoreGauges(self, self.clock, self._stale_after)

    async def live_workers(self, now: float, stale_after: float) -> list[dict]:
        names = await self.client.zrangebyscore(WORKERS_SET, now - stale_after, "+inf")
        if not names:
            return []
        values = await self.client.mget([worker_key(name) for name in names])
        return [json.loads(value) for value in values if value]


# ARGV: now, window, limit, member. Returns -1 when admitted, else the oldest counted time.
_RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return -1
"""

# ARGV: job budget (-1: none), seconds budget (-1: none). Returns 'ok', 'jobs' or 'seconds'.
# The seconds counter is named like _FINISH's.
_CHARGE_JOB = """
local jobs = tonumber(redis.call('HGET', KEYS[1], 'jobs') or '0')
local seconds = tonumber(redis.call('HGET', KEYS[1], 'gpu_seconds') or '0')
if tonumber(ARGV[1]) >= 0 and jobs >= tonumber(ARGV[1]) then return 'jobs' end
if tonumber(ARGV[2]) >= 0 and seconds >= tonumber(ARGV[2]) then return 'seconds' end
redis.call('HINCRBY', KEYS[1], 'jobs', 1)
return 'ok'
"""


class RedisLimits:
    """Limits in Redis hold across replicas and restarts; worker hosts charge generation seconds (_FINISH)."""

    def __init__(self, store: RedisJobStore, policies: dict[str, KeyPolicy], default_per_minute: int) -> None:
        self._store = store
        self._policies = policies
        self._default = default_per_minute
        self._rate = store.client.register_script(_RATE)
        self._charge_job = store.client.register_script(_CHARGE_JOB)

    async def admit(self, key: str | None) -> None:
        policy = self._policies.get(key) if key is not None else None
        owner = owner_id(key) or "-"
        now = self._store.clock.now()
        limit = self._default if policy is None or policy.rate is None else policy.rate
        try:
            if limit > 0:
                args = [repr(now), RATE_WINDOW_SECONDS, limit, f"{now!r}:{uuid.uuid4().hex}"]
                oldest = await self._rate(keys=[f"ltx2:rate:{owner}"], args=args)
                if oldest != -1:
                    raise rate_limited(limit, reset_at=float(oldest) + RATE_WINDOW_SECONDS, now=now)
            if policy is not None and (policy.jobs is not None or policy.gpu_seconds is not None):
                budget_jobs = -1 if policy.jobs is None else policy.jobs
                budget_seconds = -1 if policy.gpu_seconds is None else policy.gpu_seconds
                verdict = await self._charge_job(keys=[credits_key(owner)], args=[budget_jobs, budget_seconds])
                if verdict != "ok":
                    raise credits_spent(policy, verdict)
        except UNREACHABLE_ERRORS as exc:
            raise self._store.unreachable(exc) from None

    async def refund(self, key: str | None) -> None:
        policy = self._policies.get(key) if key is not None else None
        if key is not None and policy is not None and policy.jobs is not None:
            await self._store.client.hincrby(credits_key(owner_id(key)), "jobs", -1)

    def charges_seconds_here(self, key: str | None) -> bool:
        return False  # the worker host charges them with the job's final write

    def charge_seconds(self, key: str | None, seconds: float) -> None:
        pass
