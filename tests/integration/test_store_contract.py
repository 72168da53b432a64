"""The JobStore contract (server/jobs/record.py): the same tests on the in-memory store and on the Redis
store (a real redis-server on loopback), so the service can use either without asking which it has."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest

from server.clock import ManualClock
from server.errors import QueueFull
from server.jobs.events import JobEventHub
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.record import Job, JobStatus, new_job_id
from server.jobs.store import InputIntake
from server.storage.results import SharedDirStorage
from server.workers.messages import FAULT_CANCELLED, FAULT_EXPIRED
from tests.support.redis_server import redis_server, require_redis_server

TTL = 100.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    require_redis_server()
    with redis_server(tmp_path_factory.mktemp("redis"), persistence=False) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def make_store(request, tmp_path):
    @asynccontextmanager
    async def opened(max_queue: int = 10):
        clock = ManualClock(time.time())
        results = SharedDirStorage(tmp_path / "results")
        if request.param == "memory":
            store = InMemoryJobStore(max_queue, results, clock, TTL)
        else:
            from server.jobs.redis_store import RedisJobStore

            server = request.getfixturevalue("redis_url")
            server.client().flushdb()
            store = RedisJobStore(server.url, results, clock, max_queue, TTL)
        hub = JobEventHub()
        store.attach(hub)
        clock.hub = hub  # jobs made here report to it, as the intake's do
        await store.open()
        try:
            yield store, clock
        finally:
            await store.close()

    return opened


def job_at(clock: ManualClock) -> Job:
    return Job(id=new_job_id(), params={"prompt": "p", "seed": 1}, created_at=clock.now())


async def create(store, clock, webhook=None) -> Job:
    async def never() -> bytes:
        raise AssertionError("the image is inline")

    job = job_at(clock)
    job.live.observer = clock.hub.publish
    await store.create(job, webhook, InputIntake(b"png", never, lambda *_: None))
    return job


def test_a_created_job_is_found_queued_with_its_input_stored_and_counted(make_store):
    async def scenario():
        async with make_store() as (store, clock):
            job = await create(store, clock)
            found = await store.find(job.id)
            assert found.status is JobStatus.QUEUED and found.input is not None
            assert await store.depth() == 1 and await store.find("no-such-job") is None
            assert store.queue_view(found).position == 1
            clock.advance(1)
            second = await store.find((await create(store, clock)).id)
            assert store.queue_view(second).position == 2 and await store.depth() == 2

    asyncio.run(scenario())


def test_past_max_queue_a_job_is_refused_and_nothing_is_kept(make_store):
    async def scenario():
        async with make_store(max_queue=1) as (store, clock):
            await create(store, clock)
            refused = job_at(clock)
            with pytest.raises(QueueFull) as caught:
                await store.create(refused, None, InputIntake(b"png", None, None))
            assert caught.value.headers["Retry-After"]
            assert await store.find(refused.id) is None and await store.depth() == 1

    asyncio.run(scenario())


def test_a_cancelled_queued_job_fails_its_webhook_falls_due_and_its_changes_end(make_store):
    async def scenario():
        async with make_store() as (store, clock):
            created = await create(store, clock, ("http://hook.example/x", "http://api"))
            job = await store.find(created.id)
            with pytest.raises(asyncio.TimeoutError):
                await store.wait_final(job, 0.2)
            await store.cancel(job)
            final = await store.wait_final(job, 5)
            assert final.status is JobStatus.FAILED and final.fault == FAULT_CANCELLED
            assert store.queue_view(final).position is None and await store.depth() == 0
            seen = [current async for current in store.changes(final) if current is not None]
            assert seen[-1].status is JobStatus.FAILED
            due = await store.webhooks_due("tester")
            assert [(entry[1].id, entry[2], entry[3]) for entry in due] == [(job.id, "http://hook.example/x", "http://api")]
            await store.webhook_sent(due[0][0])

    asyncio.run(scenario())


def test_a_job_queued_one_ttl_fails_expired_and_final_jobs_expire_once(make_store):
    async def scenario():
        async with make_store() as (store, clock):
            done, waiting = await create(store, clock), await create(store, clock)
            await store.cancel(await store.find(done.id))
            assert await store.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 0
            assert await store.take_expired(clock.now()) == []
            clock.advance(TTL + 2)  # a sweep: files of expired jobs first, then the overdue ones fail
            assert await store.take_expired(clock.now()) == [done.id]
            assert await store.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
            failed = await store.find(waiting.id)
            assert failed.status is JobStatus.FAILED and failed.fault == FAULT_EXPIRED and failed.error == "expired"
            clock.advance(2)  # failed now, it expires at a later sweep, once
            assert await store.take_expired(clock.now()) == [waiting.id]
            assert await store.take_expired(clock.now()) == []

    asyncio.run(scenario())


def test_drain_ends_what_this_process_runs_and_never_raises(make_store):
    async def scenario():
        async with make_store() as (store, clock):
            job = await create(store, clock)
            await store.drain(0.1)
            assert (await store.find(job.id)).status in (JobStatus.QUEUED, JobStatus.FAILED)

    asyncio.run(scenario())


def test_a_replica_with_a_shorter_ttl_leaves_other_replicas_queued_jobs_alone(redis_url, tmp_path):
    """Each job keeps the retention of the replica that accepted it: a replica started with a short
    --ttl-seconds must not fail, in the shared queue, jobs another replica accepted for longer."""
    from server.jobs.redis_store import RedisJobStore

    async def scenario():
        redis_url.client().flushdb()
        clock = ManualClock(time.time())
        results = SharedDirStorage(tmp_path / "results")
        patient = RedisJobStore(redis_url.url, results, clock, 10, TTL)
        hasty = RedisJobStore(redis_url.url, results, clock, 10, 2.0)
        clock.hub = JobEventHub()
        for store in (patient, hasty):
            store.attach(clock.hub)
            await store.open()
        try:
            kept, short = await create(patient, clock), await create(hasty, clock)
            clock.advance(5)
            assert await hasty.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
            assert (await hasty.find(short.id)).status is JobStatus.FAILED
            assert (await hasty.find(kept.id)).status is JobStatus.QUEUED
            clock.advance(TTL)
            assert await hasty.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
            assert (await patient.find(kept.id)).status is JobStatus.FAILED
        finally:
            for store in (patient, hasty):
                await store.close()

    asyncio.run(scenario())
