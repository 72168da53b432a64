"""The Job record's status machine and metrics, and the worker's state machine: no store involved.
Where jobs live (both stores, one contract): tests/integration/test_store_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.clock import ManualClock
from server.jobs.record import IllegalTransition, Job, JobStatus
from server.workers.messages import FAULT_INPUT
from tests.support.job_stores import queued_job


def make_job(clock: ManualClock, job_id: str = "j1") -> Job:
    return queued_job(clock, job_id)


def test_job_moves_queued_processing_completed_and_no_further():
    """The record alone: the guarded transitions every store relies on."""
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
    """The record alone: a queued job's only ways out."""
    clock = ManualClock()
    job = make_job(clock)
    with pytest.raises(IllegalTransition):
        job.succeed(clock.now(), Path("x"), 1, {})
    job.fail(clock.now(), "image: cannot be decoded", FAULT_INPUT)
    assert job.status is JobStatus.FAILED and job.fault == FAULT_INPUT and job.error.startswith("image")


def test_metrics_split_queue_and_inference_time():
    """The record alone: Segmind's metrics from its timestamps."""
    clock = ManualClock()
    job = make_job(clock)
    clock.advance(2.0)
    job.start(clock.now())
    clock.advance(5.0)
    assert job.metrics(clock.now()) == {"queue_time": 2.0, "inference_time": 5.0, "total_time": 7.0}
    job.succeed(clock.now(), Path("x"), 1, {})
    clock.advance(100.0)
    assert job.metrics(clock.now())["total_time"] == 7.0


def test_worker_state_machine_has_one_way_out_of_stopped():
    """The worker supervisor's table alone, no store."""
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
