"""Several workers on one host, one ``WorkerSupervisor`` per device, started, stopped and reported on
together. Jobs are not routed here: every idle supervisor waits on its queue's ``next_job()``, so the
store alone decides the order and the oldest job goes to whichever worker is free first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from server.clock import Clock
from server.jobs.record import Job
from server.jobs.store import JobQueue
from server.settings import Settings
from server.workers.child import worker_config_from
from server.workers.devices import WorkerDevice, worker_devices
from server.workers.supervisor import WorkerState, WorkerSupervisor

# The pool's one-word state is its best worker's: a pool is READY while any worker can take a job now.
_STATE_RANK = [WorkerState(name) for name in ("ready", "busy", "starting", "load_failed", "not_started", "stopped")]


@dataclass(frozen=True)
class WorkerInfo:
    index: int
    device: str
    state: str
    pid: int | None
    restarts: int
    model: str | None
    error: str | None
    job: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class WorkerPool:
    def __init__(self, supervisors: list[WorkerSupervisor], devices: list[str]) -> None:
        if not supervisors or len(supervisors) != len(devices):
            raise ValueError("a worker pool needs one device label per supervisor, and at least one")
        self._supervisors = supervisors
        self._devices = devices

    async def start(self) -> None:
        for supervisor in self._supervisors:
            await supervisor.start()

    async def stop(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(supervisor.stop(timeout) for supervisor in self._supervisors))

    def cancel(self, job: Job) -> None:
        """A running job (or one finishing its mux) is cancelled by its worker; a queued one by any (it just fails)."""
        for supervisor in self._supervisors:
            if supervisor.runs(job):
                supervisor.cancel(job)
                return
        self._supervisors[0].cancel(job)

    @property
    def is_ready(self) -> bool:
        return any(supervisor.is_ready for supervisor in self._supervisors)

    @property
    def state(self) -> WorkerState:
        return min((supervisor.state for supervisor in self._supervisors), key=_STATE_RANK.index)

    @property
    def worker_pid(self) -> int | None:
        return self._supervisors[0].worker_pid

    @property
    def restarts(self) -> int:
        return sum(supervisor.restarts for supervisor in self._supervisors)

    @property
    def model_description(self) -> str | None:
        return next((s.model_description for s in self._supervisors if s.model_description), None)

    @property
    def last_load_error(self) -> str | None:
        return next((s.last_load_error for s in self._supervisors if s.last_load_error), None)

    @property
    def last_gpu_peak_bytes(self) -> int:
        return max(supervisor.last_gpu_peak_bytes for supervisor in self._supervisors)

    @property
    def workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                index=index,
                device=device,
                state=supervisor.state.value,
                pid=supervisor.worker_pid,
                restarts=supervisor.restarts,
                model=supervisor.model_description,
                error=supervisor.last_load_error,
                job=supervisor.current_job.id if supervisor.current_job is not None else None,
            )
            for index, (supervisor, device) in enumerate(zip(self._supervisors, self._devices, strict=True))
        ]


def build_pool(
    settings: Settings, queue_for: Callable[[int], JobQueue], clock: Clock, devices: list[WorkerDevice]
) -> WorkerPool:
    """One supervisor per device on ``queue_for(index)`` (a shared store's under names of their own)."""
    supervisors = [
        WorkerSupervisor(
            worker_config_from(settings, device),
            queue_for(index),
            clock,
            start_timeout=settings.worker_start_timeout,
            job_timeout=settings.job_timeout,
            cancel_grace=settings.cancel_grace,
            name=f"worker-{index}" if len(devices) > 1 else "worker",
        )
        for index, device in enumerate(devices)
    ]
    return WorkerPool(supervisors, [device.label for device in devices])


def devices_for(settings: Settings) -> list[WorkerDevice]:
    """The workers ``--gpus`` asks for; raises NoGpus for ``all`` on a host without a GPU."""
    return worker_devices(settings.gpus, settings.device, threads=settings.worker_threads)
