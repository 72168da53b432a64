"""Unit tests of the job table: the status machine, FIFO order, metrics and retention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.clock import ManualClock
from server.errors import QueueFull
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.record import IllegalTransition, Job, JobStatus
from server.workers.messages import FAULT_INPUT


def make_job(clock: ManualClock, job_id: str = "j1") -> Job:
    return Job(id=job_id, params={}, created_at=clock.now())


def test_job_moves_queued_processing_completed_and_no_further():
    clock = ManualClock()
    job = make_job(clock)
    job.start(clock.now())
    job.succeed(clock.now(), Path("out.mp4"), 42, {"denoise": 1.0})
    assert job.status is JobStatus.COMPLETED and job.finished.is_set()
    with pytest.raises(IllegalTransition):
        job.fail(clock.now(), "late failure")
    with pytest.raises(IllegalTransition):
        job.start(clock.now())


def test_queued_job_can_fail_but_cannot_complete_without_running():
    clock = ManualClock()
    job = make_job(clock)
    with pytest.raises(IllegalTransition):
        job.succeed(clock.now(), Path("x"), 1, {})
    job.fail(clock.now(), "image: cannot be decoded", FAULT_INPUT)
    assert job.status is JobStatus.FAILED and job.fault == FAULT_INPUT and job.error.startswith("image")


def test_metrics_split_queue_and_inference_time():
    clock = ManualClock()
    job = make_job(clock)
    clock.advance(2.0)
    job.start(clock.now())
    clock.advance(5.0)
    assert job.metrics(clock.now()) == {"queue_time": 2.0, "inference_time": 5.0, "total_time": 7.0}
    job.succeed(clock.now(), Path("x"), 1, {})
    clock.advance(100.0)
    assert job.metrics(clock.now())["total_time"] == 7.0


def test_store_hands_out_ready_jobs_in_submission_order():
    async def scenario() -> list[str]:
        clock = ManualClock()
        store = InMemoryJobStore(max_queue=10)
        jobs = [make_job(clock, f"j{i}") for i in range(3)]
        for job in jobs:
            store.add(job)
        for job in jobs:
            store.mark_input_ready(job)
        taken = []
        for _ in jobs:
            job = await asyncio.wait_for(store.next_job(), 1)
            job.start(clock.now())
            taken.append(job.id)
        return taken

    assert asyncio.run(scenario()) == ["j0", "j1", "j2"]


def test_store_skips_jobs_that_failed_while_waiting():
    async def scenario() -> str:
        clock = ManualClock()
        store = InMemoryJobStore(max_queue=10)
        first, second = make_job(clock, "a"), make_job(clock, "b")
        for job in (first, second):
            store.add(job)
            store.mark_input_ready(job)
        first.fail(clock.now(), "cancelled")
        return (await asyncio.wait_for(store.next_job(), 1)).id

    assert asyncio.run(scenario()) == "b"


def test_full_queue_refuses_with_retry_after():
    clock = ManualClock()
    store = InMemoryJobStore(max_queue=1)
    store.add(make_job(clock, "a"))
    with pytest.raises(QueueFull) as caught:
        store.add(make_job(clock, "b"))
    assert caught.value.headers["Retry-After"]


def test_retention_expires_finished_jobs_after_ttl_but_never_unfinished_ones():
    clock = ManualClock()
    store = InMemoryJobStore(max_queue=10, ttl=3600)
    done, waiting = make_job(clock, "done"), make_job(clock, "waiting")
    store.add(done)
    store.add(waiting)
    done.start(clock.now())
    done.succeed(clock.now(), Path("x"), 1, {})
    clock.advance(3599)
    assert asyncio.run(store.take_expired(clock.now())) == []
    clock.advance(1)
    assert asyncio.run(store.take_expired(clock.now())) == ["done"]
    assert store.get("done") is None and store.get("waiting") is waiting


def test_worker_state_machine_has_one_way_out_of_stopped():
    from server.workers.supervisor import WORKER_TRANSITIONS, WorkerState

    assert WORKER_TRANSITIONS[WorkerState.STOPPED] == frozenset()
    assert all(
        WorkerState.STOPPED in targets
        for state, targets in WORKER_TRANSITIONS.items()
        if state is not WorkerState.STOPPED
    )
    # Only a loaded worker takes jobs; a crashed one always goes back through STARTING.
    assert WorkerState.BUSY in WORKER_TRANSITIONS[WorkerState.READY]
    assert WorkerState.BUSY not in WORKER_TRANSITIONS[WorkerState.STARTING]
    assert WorkerState.READY not in WORKER_TRANSITIONS[WorkerState.LOAD_FAILED]


def test_a_job_put_back_keeps_its_place_at_the_front():
    """A worker that died while waiting for a job gives it back; the next taker gets it first."""

    async def scenario() -> list[str]:
        store = InMemoryJobStore(max_queue=10)
        for name in ("a", "b"):
            job = Job(id=name, params={}, created_at=0.0)
            store.add(job)
            store.mark_input_ready(job)
        store.put_back(await store.next_job())
        return [(await store.next_job()).id, (await store.next_job()).id]

    assert asyncio.run(scenario()) == ["a", "b"]
