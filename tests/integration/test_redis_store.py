"""What only the Redis store does, against a real redis-server: delivery attempts and redelivery, replicas
sharing one queue, limits and sweeps, and its own keys. What both stores do: test_store_contract.py.

In-process (two stores stand for two API replicas, two work sources for two worker hosts), with a
manual clock for the API's timestamps; redelivery waits for real, on a one-second visibility timeout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from server.clock import ManualClock
from server.errors import InsufficientCredits, QueueFull, RateLimited
from server.jobs.limits import KeyPolicy, owner_id
from server.jobs.record import Job, JobStatus
from server.jobs.redis_store import RedisJobStore, RedisLimits
from server.storage.results import SharedDirStorage
from server.workers.redis_work import RedisWorkSource
from tests.support.job_stores import queued_job
from tests.support.redis_server import redis_server, require_redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    require_redis_server()
    with redis_server(tmp_path_factory.mktemp("redis"), persistence=False) as server:
        yield server


@pytest.fixture
def redis(redis_url):
    client = redis_url.client()
    client.flushdb()
    yield redis_url
    client.close()


def new_job(clock: ManualClock, job_id: str, tmp_path: Path, owner: str | None = None) -> Job:
    image = tmp_path / job_id / "input.img"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"png")
    return queued_job(clock, job_id, owner, str(image))


def run(coro):
    return asyncio.run(coro)


def api_store(redis, tmp_path, clock, max_queue: int = 10, ttl: float = 3600.0) -> RedisJobStore:
    return RedisJobStore(redis.url, SharedDirStorage(tmp_path), clock, max_queue=max_queue, ttl_seconds=ttl)


def work_source(
    redis, tmp_path: Path, name: str, clock, visibility: float = 1.0, max_deliveries: int = 3
) -> RedisWorkSource:
    return RedisWorkSource(
        redis.url,
        name,
        clock,
        visibility_timeout=visibility,
        max_deliveries=max_deliveries,
        results=SharedDirStorage(tmp_path),
        scratch_root=tmp_path / "scratch",
    )


def test_a_create_retried_after_a_lost_answer_queues_the_job_once(redis, tmp_path):
    """Redis only: its create script may run twice when Redis's answer is lost and the client retries."""

    async def scenario():
        clock = ManualClock(time.time())
        store = api_store(redis, tmp_path, clock, max_queue=2)
        first = new_job(clock, "a", tmp_path)
        await store.queue(first)
        await store.queue(first)  # a retry after a lost answer queues nothing twice
        await store.queue(new_job(clock, "b", tmp_path))
        with pytest.raises(QueueFull):
            await store.queue(new_job(clock, "c", tmp_path))
        found = await store.find("b")
        assert found.status is JobStatus.QUEUED and found.live.queue_view.position == 2
        assert await store.depth() == 2 and await store.find("c") is None
        await store.close()

    run(scenario())
    assert redis.client().xlen("ltx2:queue") == 2


def test_a_finished_job_counts_its_delivery_charges_its_owner_and_expires_through_redis(redis, tmp_path):
    """Redis only: delivery attempts, GPU seconds charged by the worker host, and Redis's own expiry of the record."""

    async def scenario():
        clock = ManualClock(time.time())
        store = api_store(redis, tmp_path, clock)
        source = work_source(redis, tmp_path, "host", clock)
        await store.queue(new_job(clock, "first", tmp_path, owner=owner_id("k")))
        job = await source.for_worker(0).next_job(timeout=5)
        assert job.attempt == 1
        job.start(clock.now())
        clock.advance(2.5)
        job.live.files.output.write_bytes(b"mp4")
        job.succeed(clock.now(), job.live.files.output, 7, {})
        await source.settle_writes()
        assert (await store.find("first")).status is JobStatus.COMPLETED
        await store.close()
        await source.close()

    run(scenario())
    client = redis.client()
    assert float(client.hget(f"ltx2:credits:{owner_id('k')}", "gpu_seconds")) == pytest.approx(2.5)
    assert 0 < client.pttl("ltx2:job:first") <= 3600 * 1000, "a final record expires through Redis"
    assert client.zscore("ltx2:expiries", "first") is not None


def test_a_delivery_presumed_dead_cannot_complete_the_job_it_lost(redis, tmp_path):
    """Redis only: a job is redelivered when its worker host stops touching it (memory never redelivers)."""

    async def scenario():
        clock = ManualClock(time.time())
        store = api_store(redis, tmp_path, clock)
        lost, other = work_source(redis, tmp_path, "lost", clock), work_source(redis, tmp_path, "other", clock)
        await store.queue(new_job(clock, "j", tmp_path))
        stale = await lost.for_worker(0).next_job(timeout=5)
        stale.start(clock.now())
        # No heartbeat from "lost": after the 1 s visibility timeout the other host claims it.
        retaken = await other.for_worker(0).next_job(timeout=10)
        assert retaken.id == "j"
        retaken.start(clock.now())
        stale.live.files.output.write_bytes(b"late")
        stale.succeed(clock.now(), stale.live.files.output, 1, {})
        await lost.settle_writes()
        assert (await store.find("j")).status is JobStatus.PROCESSING, "the stale delivery's result is refused"
        assert not stale.live.files.output.exists(), "and its file removed"
        retaken.live.files.output.write_bytes(b"mp4")
        retaken.succeed(clock.now(), retaken.live.files.output, 1, {})
        await other.settle_writes()
        final = await store.find("j")
        assert final.status is JobStatus.COMPLETED and final.output == str(retaken.live.files.output)
        for closing in (store, lost, other):
            await closing.close()

    run(scenario())
    assert redis.client().hget("ltx2:job:j", "attempt") == "2"


def test_a_job_whose_worker_keeps_dying_fails_after_max_deliveries(redis, tmp_path):
    """Redis only: --max-deliveries bounds redelivery (in memory a job whose worker died fails at once)."""

    async def scenario():
        clock = ManualClock(time.time())
        store = api_store(redis, tmp_path, clock)
        source = work_source(redis, tmp_path, "crashy", clock, max_deliveries=2)
        worker = source.for_worker(0)
        await store.queue(new_job(clock, "doomed", tmp_path))
        for _ in range(2):
            job = await worker.next_job(timeout=10)
            job.start(clock.now())
            assert worker.release_job(job)  # its worker process died
        assert await worker.next_job(timeout=3) is None
        failed = await store.find("doomed")
        assert failed.status is JobStatus.FAILED
        assert "gave up after 2 deliveries" in failed.error
        await store.close()
        await source.close()

    run(scenario())


def test_a_cancel_flag_reaches_the_worker_host_with_the_running_jobs_next_report(redis, tmp_path):
    """Redis only: the API replica flags the record and the worker host reads the flag (in memory the store
    tells its own pool); that a queued job fails at once is in the contract."""

    async def scenario():
        clock = ManualClock(time.time())
        store = api_store(redis, tmp_path, clock)
        source = work_source(redis, tmp_path, "host", clock)
        cancelled: list[str] = []
        source.cancel_running = lambda job: cancelled.append(job.id)
        await store.queue(new_job(clock, "running", tmp_path))
        await store.queue(new_job(clock, "waiting", tmp_path))
        job = await source.for_worker(0).next_job(timeout=5)
        job.start(clock.now())
        assert await store.request_cancel(await store.find("waiting")) == "FAILED"
        assert await store.request_cancel(await store.find("running")) == "PROCESSING"
        job.report_progress("denoising", 1, 10)
        await source.settle_writes()
        assert cancelled == ["running"], "the worker hears of it with its next report"
        await store.close()
        await source.close()

    run(scenario())


def test_rate_limits_and_budgets_hold_across_replicas(redis, tmp_path):
    """Redis only: two API replicas share one key's limits (the in-memory limits are one process's)."""

    async def scenario():
        clock = ManualClock(time.time())
        policies = {"r": KeyPolicy("r", rate=2), "b": KeyPolicy("b", jobs=1)}
        one, two = api_store(redis, tmp_path, clock), api_store(redis, tmp_path, clock)
        first, second = RedisLimits(one, policies, 0), RedisLimits(two, policies, 0)
        await first.admit("r")
        await second.admit("r")
        with pytest.raises(RateLimited) as limited:
            await first.admit("r")
        assert limited.value.headers["Retry-After"] == "60"
        clock.advance(61)
        await second.admit("r")
        await first.admit("b")
        with pytest.raises(InsufficientCredits):
            await second.admit("b")
        await first.refund("b")  # the submission was refused after all
        await second.admit("b")
        await one.close()
        await two.close()

    run(scenario())


def test_expired_jobs_are_swept_by_exactly_one_replica(redis, tmp_path):
    """Redis only: several replicas sweep one store; each expired job's files are deleted by one of them."""

    async def scenario():
        clock = ManualClock(time.time())
        one, two = api_store(redis, tmp_path, clock, ttl=5), api_store(redis, tmp_path, clock, ttl=5)
        await one.queue(new_job(clock, "old", tmp_path))
        await one.request_cancel(await one.find("old"))
        assert await one.take_expired(clock.now()) == []
        clock.advance(6)
        taken = await one.take_expired(clock.now()) + await two.take_expired(clock.now())
        assert taken == ["old"]
        await one.close()
        await two.close()

    run(scenario())


def test_a_replica_with_a_shorter_ttl_leaves_other_replicas_queued_jobs_alone(redis, tmp_path):
    """Redis only: replicas with different --ttl-seconds share one queue; each job keeps the retention of the
    replica that accepted it, so a short-TTL replica must not fail jobs another accepted for longer."""

    async def scenario():
        clock = ManualClock(time.time())
        patient, hasty = api_store(redis, tmp_path, clock, ttl=100), api_store(redis, tmp_path, clock, ttl=2)
        kept, short = new_job(clock, "kept", tmp_path), new_job(clock, "short", tmp_path)
        await patient.queue(kept)
        await hasty.queue(short)
        clock.advance(5)
        assert await hasty.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
        assert (await hasty.find("short")).status is JobStatus.FAILED
        assert (await hasty.find("kept")).status is JobStatus.QUEUED
        clock.advance(100)
        assert await hasty.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
        assert (await patient.find("kept")).status is JobStatus.FAILED
        await patient.close()
        await hasty.close()

    run(scenario())
