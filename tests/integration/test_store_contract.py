"""The store contract (server/jobs/store.py): the same tests on the in-memory store and on the Redis store
(a real redis-server on loopback), through ``JobStore`` for the API's side and ``JobQueue`` for a worker's,
so the service can use either without asking which it has.

What only one store does is tested apart: tests/integration/test_redis_store.py (delivery attempts,
replicas sharing a queue and limits, Redis's own keys) and tests/unit/test_jobs.py (the Job record alone).
"""

from __future__ import annotations

import asyncio

import pytest

from server.errors import QueueFull
from server.jobs.record import JobStatus
from server.jobs.store import InputIntake
from server.workers.messages import FAULT_CANCELLED, FAULT_EXPIRED
from tests.support.job_stores import no_fetch, open_store, queued_job
from tests.support.redis_server import redis_server, require_redis_server

TTL = 100.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    require_redis_server()
    with redis_server(tmp_path_factory.mktemp("redis"), persistence=False) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def make_store(request, tmp_path):
    def opened(max_queue: int = 10, ttl: float = TTL):
        url = None
        if request.param == "redis":
            server = request.getfixturevalue("redis_url")
            server.client().flushdb()
            url = server.url
        return open_store(request.param, tmp_path / "results", url, max_queue, ttl)

    opened.kind = request.param
    return opened


def test_a_created_job_is_found_queued_with_its_input_stored_and_counted(make_store):
    async def scenario():
        async with make_store() as opened:
            store, clock = opened.store, opened.clock
            job = await opened.create()
            found = await store.find(job.id)
            assert found.status is JobStatus.QUEUED and found.input is not None
            assert await store.depth() == 1 and await store.find("no-such-job") is None
            assert store.queue_view(found).position == 1
            clock.advance(1)
            second = await store.find((await opened.create()).id)
            assert store.queue_view(second).position == 2 and await store.depth() == 2

    asyncio.run(scenario())


def test_past_max_queue_a_job_is_refused_with_retry_after_and_nothing_is_kept(make_store):
    async def scenario():
        async with make_store(max_queue=1) as opened:
            store = opened.store
            await opened.create()
            refused = queued_job(opened.clock)
            with pytest.raises(QueueFull) as caught:
                await store.create(refused, None, InputIntake(b"png", no_fetch, lambda *_: None))
            assert caught.value.headers["Retry-After"]
            assert await store.find(refused.id) is None and await store.depth() == 1

    asyncio.run(scenario())


def test_workers_take_jobs_in_submission_order_and_what_they_report_is_found(make_store):
    async def scenario():
        async with make_store() as opened:
            store, clock = opened.store, opened.clock
            submitted = []
            for _ in range(3):
                submitted.append((await opened.create()).id)
                clock.advance(1)  # distinct submission times: the queue position goes by them
            first = await opened.take()
            assert first.id == submitted[0]
            first.start(clock.now())
            first.report_progress("denoising", 1, 2)
            await opened.settle()
            running = await store.find(first.id)
            assert running.status is JobStatus.PROCESSING and running.stage == "denoising" and running.progress > 0
            clock.advance(2.5)
            await opened.complete(first, seed=7)
            done = await store.find(first.id)
            output = first.live.files.output
            assert done.status is JobStatus.COMPLETED and done.output == str(output) and done.seed == 7
            assert done.metrics(clock.now())["inference_time"] == pytest.approx(2.5)
            queued_view = store.queue_view(await store.find(submitted[1]))
            assert queued_view.position == 1 and queued_view.average_seconds == pytest.approx(2.5)
            taken = [first.id]
            for _ in submitted[1:]:
                job = await opened.take()
                job.start(clock.now())
                taken.append(job.id)
            assert taken == submitted

    asyncio.run(scenario())


def test_a_cancelled_queued_job_is_never_handed_out_and_a_running_one_is_left_to_its_worker(make_store):
    async def scenario():
        async with make_store() as opened:
            store, clock = opened.store, opened.clock
            running, waiting, later = [await opened.create() for _ in range(3)]
            job = await opened.take()
            assert job.id == running.id
            job.start(clock.now())
            await store.cancel(await store.find(waiting.id))
            cancelled = await store.find(waiting.id)
            assert cancelled.status is JobStatus.FAILED and cancelled.error == "cancelled"
            await store.cancel(await store.find(running.id))
            assert (await store.find(running.id)).status is JobStatus.PROCESSING, "its worker stops it"
            assert (await opened.take()).id == later.id

    asyncio.run(scenario())


def test_a_cancelled_queued_job_fails_its_webhook_falls_due_and_its_changes_end(make_store):
    async def scenario():
        async with make_store() as opened:
            store = opened.store
            created = await opened.create(("http://hook.example/x", "http://api"))
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
            assert [(entry[1].id, entry[2], entry[3]) for entry in due] == [
                (job.id, "http://hook.example/x", "http://api")
            ]
            await store.webhook_sent(due[0][0])

    asyncio.run(scenario())


def test_final_jobs_expire_at_their_ttl_once_and_are_forgotten_and_one_queued_a_ttl_fails_expired(make_store):
    async def scenario():
        ttl = 1.0  # Redis deletes an expired record in real time: the test waits for it
        async with make_store(ttl=ttl) as opened:
            store, clock = opened.store, opened.clock
            done, waiting = await opened.create(), await opened.create()
            await store.cancel(await store.find(done.id))
            assert await store.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 0
            assert await store.take_expired(clock.now()) == []
            clock.advance(ttl - 0.125)
            assert await store.take_expired(clock.now()) == []
            clock.advance(0.125)  # a sweep: files of expired jobs first, then the overdue ones fail
            assert await store.take_expired(clock.now()) == [done.id], "a final job, never an unfinished one"
            assert await store.fail_overdue(clock.now(), "expired", 30.0, 0.0) == 1
            failed = await store.find(waiting.id)
            assert failed.status is JobStatus.FAILED and failed.fault == FAULT_EXPIRED and failed.error == "expired"
            await opened.caught_up()
            assert await store.find(done.id) is None
            clock.advance(2)  # failed now, it expires at a later sweep, once
            assert await store.take_expired(clock.now()) == [waiting.id]
            assert await store.take_expired(clock.now()) == []

    asyncio.run(scenario())


def test_drain_ends_what_this_process_runs_and_never_raises(make_store):
    async def scenario():
        async with make_store() as opened:
            job = await opened.create()
            await opened.store.drain(0.1)
            assert (await opened.store.find(job.id)).status in (JobStatus.QUEUED, JobStatus.FAILED)

    asyncio.run(scenario())


def test_a_job_put_back_by_its_worker_stays_queued_and_is_the_next_one_taken(make_store):
    """The supervisor puts back a job it took but never started (its worker died meanwhile)."""

    async def scenario():
        async with make_store() as opened:
            store, clock = opened.store, opened.clock
            first = await opened.create()
            clock.advance(1)
            second = await opened.create()
            opened.worker.put_back(await opened.take())
            await opened.settle()
            assert (await store.find(first.id)).status is JobStatus.QUEUED
            assert (await store.find(first.id)).stage == "queued"
            assert [(await opened.take()).id, (await opened.take()).id] == [first.id, second.id]

    asyncio.run(scenario())
