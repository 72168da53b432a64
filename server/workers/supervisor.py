"""Runs the worker child from the API process: spawns it, feeds it jobs one at a time, restarts it. State
changes on the event loop thread only; a reader thread per child hands each message to the loop.

One job at a time on the GPU: the next is handed over once the child is idle, or once it says the job's GPU
part is over (JobDecoded), while that job's mux finishes in the child. Such a job stays this worker's until
its JobSucceeded or JobFailed: cancels, time limits and a crash treat it as they treat the running job.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import multiprocessing
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from server.clock import Clock
from server.jobs.record import Job, JobStatus
from server.jobs.store import JobQueue
from server.workers import messages as msg
from server.workers.child import WorkerConfig, run_worker

log = logging.getLogger("ltx2.supervisor")

MAX_RESTART_DELAY = 60.0


class WorkerState(str, enum.Enum):
    NOT_STARTED = "not_started"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    LOAD_FAILED = "load_failed"
    STOPPED = "stopped"


WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.NOT_STARTED: frozenset({WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.STARTING: frozenset(
        {WorkerState.READY, WorkerState.LOAD_FAILED, WorkerState.STOPPED, WorkerState.STARTING}
    ),
    WorkerState.READY: frozenset({WorkerState.BUSY, WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.BUSY: frozenset({WorkerState.READY, WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.LOAD_FAILED: frozenset({WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.STOPPED: frozenset(),
}


def crash_restart_delay(crashes_in_a_row: int) -> float:
    """Seconds before restarting a worker that died while serving: at once after a lone crash (the
    job that crashed it has failed; the next may be fine), then backing off while crashes repeat
    with no job completing in between (a broken GPU or driver), so the restarts do not spin."""
    if crashes_in_a_row <= 1:
        return 0.0
    return min(MAX_RESTART_DELAY, 0.5 * 2 ** (crashes_in_a_row - 2))


@dataclass(eq=False)
class _Child:
    generation: int
    process: multiprocessing.process.BaseProcess
    conn: Connection


class WorkerSupervisor:
    def __init__(
        self, config: WorkerConfig, store: JobQueue, clock: Clock, start_timeout: float = 600.0,
        job_timeout: float = 0.0, cancel_grace: float = 30.0, name: str = "worker",
    ) -> None:  # fmt: skip
        self._config = config
        # Names this worker in logs and process titles when a pool runs several.
        self.name = name
        self._start_timeout = start_timeout
        self._job_timeout = job_timeout
        self._cancel_grace = cancel_grace
        # Set when we kill the child on purpose (time limit, a cancel it did not heed): that job then
        # fails with this (error, fault) instead of "the worker process died".
        self._kill_reason: tuple[Job, str, str] | None = None
        # Each job's time limit, from its start to its final message (its mux included).
        self._job_watchdogs: dict[str, asyncio.TimerHandle] = {}
        self._store = store
        self._clock = clock
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: _Child | None = None
        self._generation = 0
        self._state = WorkerState.NOT_STARTED
        # Set exactly while the worker is READY: loaded and not running a job.
        self._idle = asyncio.Event()
        self._current: Job | None = None
        # A job past its GPU part (JobDecoded) whose mux the child is finishing.
        self._muxing: Job | None = None
        # Set when the current job ends or reaches its mux: the dispatcher may hand over the next.
        self._current_done = asyncio.Event()
        self._dispatcher: asyncio.Task | None = None
        self._restart_task: asyncio.Task | None = None
        self._consecutive_failures = 0
        # Worker deaths while serving, not caused by us, since the last completed job.
        self._crashes_in_a_row = 0
        self.restarts = 0
        self.last_load_error: str | None = None
        self.last_gpu_peak_bytes = 0
        self.model_description: str | None = None

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def is_ready(self) -> bool:
        return self._state in (WorkerState.READY, WorkerState.BUSY)

    @property
    def worker_pid(self) -> int | None:
        return self._child.process.pid if self._child else None

    @property
    def current_job(self) -> Job | None:
        return self._current if self._state is WorkerState.BUSY else None

    def runs(self, job: Job) -> bool:
        """Whether ``job`` is this worker's: generating, or finishing its mux."""
        return job.status is JobStatus.PROCESSING and job in self._jobs_in_child()

    def _jobs_in_child(self) -> list[Job]:
        return [job for job in (self._current, self._muxing) if job is not None]

    def _set_state(self, new: WorkerState) -> None:
        if new not in WORKER_TRANSITIONS[self._state]:
            raise RuntimeError(f"worker: {self._state.value} -> {new.value} is not allowed")
        self._state = new
        if new is WorkerState.READY:
            self._idle.set()
        else:
            self._idle.clear()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._spawn_child()
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name=f"ltx2-dispatcher-{self.name}")

    async def stop(self, timeout: float = 10.0) -> None:
        if self._dispatcher:
            self._dispatcher.cancel()
        if self._restart_task:
            self._restart_task.cancel()
        child, self._child = self._child, None
        # Whatever their status says (a drain may have failed them already), the child still runs them.
        running = self._jobs_in_child()
        if self._state is not WorkerState.STOPPED:
            self._set_state(WorkerState.STOPPED)
        if child is not None:
            for job in running:
                # Whatever grace the job had (the SIGTERM drain) is over: stop it at its next step,
                # and do not wait long for a generator that never reaches one.
                self._send(child, msg.CancelJob(job_id=job.id))
                timeout = min(timeout, 2.0)
            await asyncio.to_thread(self._stop_child, child, timeout)

    @staticmethod
    def _stop_child(child: _Child, timeout: float) -> None:
        try:
            child.conn.send(msg.Shutdown())
        except (OSError, ValueError):
            pass
        child.process.join(timeout)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(5)
        child.conn.close()

    def _spawn_child(self) -> None:
        self._generation += 1
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=run_worker, args=(child_conn, self._config), name=f"ltx2-{self.name}-{self._generation}", daemon=True
        )
        self._set_state(WorkerState.STARTING)
        process.start()
        child_conn.close()
        child = _Child(self._generation, process, parent_conn)
        self._child = child
        threading.Thread(
            target=self._read_child, args=(child,), name=f"ltx2-reader-{child.generation}", daemon=True
        ).start()
        model = self._config.model
        log.info("%s process %s started (pid %s), loading model %r", self.name, child.generation, process.pid, model)
        asyncio.get_running_loop().call_later(self._start_timeout, self._kill_if_not_ready, child)

    def _kill_if_not_ready(self, child: _Child) -> None:
        """A worker that hangs while loading is killed; its exit then restarts it with backoff."""
        if child.generation == self._generation and self._state is WorkerState.STARTING:
            log.error("worker did not load the model within %.0f s; killing it", self._start_timeout)
            self.last_load_error = f"the worker did not load the model within {self._start_timeout:g} s"
            child.process.kill()

    def _read_child(self, child: _Child) -> None:
        """Reader thread: forward every message to the loop; report the child's death at EOF."""
        assert self._loop is not None
        while True:
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001 - an unreadable message must not kill the reader
                log.error("unreadable message from worker: %s", exc)
                continue
            self._call_on_loop(self._handle_message, child.generation, message)
        child.process.join(5)
        self._call_on_loop(self._handle_child_exit, child.generation, child.process.exitcode)

    def _call_on_loop(self, func, *args) -> None:
        if self._loop is None:
            return  # never started: nothing listens
        try:
            self._loop.call_soon_threadsafe(func, *args)
        except RuntimeError:
            pass  # the loop is closed: the server is shutting down

    def _handle_message(self, generation: int, message: object) -> None:
        if generation != self._generation or self._state is WorkerState.STOPPED:
            return  # from a child we already gave up on
        now = self._clock.now()
        job = self._job_in_child(getattr(message, "job_id", None))
        if isinstance(message, msg.WorkerReady):
            self._consecutive_failures = 0
            self.last_load_error = None
            self.model_description = message.description or message.model
            self._set_state(WorkerState.READY)
            log.info("%s ready in %.1f s: %s", self.name, message.load_seconds, self.model_description)
        elif isinstance(message, msg.WorkerLoadFailed):
            self.last_load_error = message.error
            self._set_state(WorkerState.LOAD_FAILED)
            log.error("worker failed to load the model: %s", message.error)
        elif job is None:
            return  # about a job this worker no longer runs
        elif isinstance(message, msg.JobProgress):
            job.report_progress(message.stage, message.step, message.total_steps)
        elif isinstance(message, msg.JobDecoded):
            self._move_to_muxing(job)
        elif isinstance(message, msg.JobSucceeded):
            self._crashes_in_a_row = 0
            self.last_gpu_peak_bytes = message.peak_gpu_memory_bytes
            job.succeed(now, Path(message.output_path), message.seed, message.stage_seconds, message.enhanced_prompt)
            self._finish(job)
        elif isinstance(message, msg.JobFailed):
            job.fail(now, message.error, message.fault)
            self._finish(job)

    def _job_in_child(self, job_id: str | None) -> Job | None:
        return next(
            (job for job in self._jobs_in_child() if job.id == job_id and job.status is JobStatus.PROCESSING), None
        )

    def _move_to_muxing(self, job: Job) -> None:
        """The child takes the next job while this one's mux finishes (it sends JobDecoded only with none muxing)."""
        if job is not self._current or self._muxing is not None:
            return
        self._muxing, self._current = job, None
        if self._state is WorkerState.BUSY:
            self._set_state(WorkerState.READY)
        self._current_done.set()

    def _finish(self, job: Job) -> None:
        stages = " ".join(f"{name}={seconds:.2f}" for name, seconds in job.stage_seconds.items())
        seconds = job.metrics(self._clock.now())["inference_time"]
        log.info("job %s %s in %.2f s%s", job.id, job.status.value, seconds, f" (stages: {stages})" if stages else "")
        if job is self._current and self._state is WorkerState.BUSY:
            self._set_state(WorkerState.READY)
        self._drop(job)

    def _drop(self, job: Job) -> None:
        watchdog = self._job_watchdogs.pop(job.id, None)
        if watchdog is not None:
            watchdog.cancel()
        if job is self._muxing:
            self._muxing = None
        if job is self._current:
            self._current = None
            self._current_done.set()

    def _handle_child_exit(self, generation: int, exitcode: int | None) -> None:
        if generation != self._generation or self._state is WorkerState.STOPPED:
            return
        self._child = None
        died_while_serving = self._state in (WorkerState.READY, WorkerState.BUSY)
        # STARTING before failing the job, so the dispatcher cannot hand work to the dead child.
        self._set_state(WorkerState.STARTING)
        deliberate = self._kill_reason is not None
        for job in self._jobs_in_child():
            self._end_with_the_child(job, exitcode)
        self._kill_reason = None
        if died_while_serving:
            self._consecutive_failures = 0
            if not deliberate:
                self._crashes_in_a_row += 1
            delay = 0.0 if deliberate else crash_restart_delay(self._crashes_in_a_row)
        else:
            # It never became ready: back off so a broken model does not spin the CPU.
            self._consecutive_failures += 1
            delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (self._consecutive_failures - 1))
        log.warning("%s process exited (code %s); restarting in %.1f s", self.name, exitcode, delay)
        self.restarts += 1
        self._restart_task = asyncio.get_running_loop().create_task(self._restart_after(delay))

    def _end_with_the_child(self, job: Job, exitcode: int | None) -> None:
        """A job the dead child held: the one it was killed for fails with the reason; any other is a crash's,
        delivered again by a shared queue or failed."""
        killed_for = self._kill_reason[0] if self._kill_reason is not None else None
        if job.status is not JobStatus.PROCESSING:
            self._drop(job)
        elif job is not killed_for and self._store.release_job(job):
            # A shared queue delivers the job again (to any worker); it is not this worker's to fail.
            self._drop(job)
        else:
            error, fault = (
                self._kill_reason[1:]
                if self._kill_reason is not None and job is killed_for
                else (
                    f"the worker process died while generating this job (exit code {exitcode}); "
                    "the worker was restarted",
                    msg.FAULT_GENERATION,
                )
            )
            job.fail(self._clock.now(), error, fault)
            self._finish(job)

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._state is not WorkerState.STOPPED:
            self._spawn_child()

    async def _dispatch_forever(self) -> None:
        """Take a job only once this worker is idle: with several workers on one store, a worker
        that is still loading (or restarting) must leave the queue to those that can run it now."""
        while True:
            await self._idle.wait()
            job = await self._store.next_job()
            if job is None or job.status is not JobStatus.QUEUED:
                continue
            if self._state is not WorkerState.READY:
                # The child died while we waited for a job: the job keeps its place for another worker.
                self._store.put_back(job)
                continue
            await self._run_on_worker(job)

    async def _run_on_worker(self, job: Job) -> None:
        child = self._child
        files = job.live.files
        assert child is not None and files is not None
        job.start(self._clock.now())
        self._current = job
        self._current_done.clear()
        self._set_state(WorkerState.BUSY)
        message = msg.SubmitJob(
            job_id=job.id, image_path=str(files.input), output_path=str(files.output), spec=job.params
        )
        if self._job_timeout > 0:
            error = f"timed out: the job ran past the {self._job_timeout:g} s limit; the worker was restarted"
            self._job_watchdogs[job.id] = asyncio.get_running_loop().call_later(
                self._job_timeout, self._kill_for, job, error, msg.FAULT_GENERATION
            )
        self._send(child, message)
        await self._current_done.wait()

    @staticmethod
    def _send(child: _Child, message: object) -> None:
        try:
            child.conn.send(message)
        except (OSError, ValueError):
            pass  # the child is dying; its exit handler fails the running job

    def _kill_for(self, job: Job, error: str, fault: str) -> None:
        """Kill the child if it is still running ``job``; that job fails with ``error``."""
        child = self._child
        if child is None or not self.runs(job) or self._kill_reason is not None:
            return
        log.warning("killing the worker (pid %s) running job %s: %s", child.process.pid, job.id, error)
        self._kill_reason = (job, error, fault)
        child.process.kill()

    def cancel(self, job: Job) -> None:
        """A queued job fails at once; a running one is asked to stop at its next step, and its
        worker is killed (and restarted) if it has not stopped within the cancel grace period."""
        if job.status is JobStatus.QUEUED:
            job.fail(self._clock.now(), "cancelled", msg.FAULT_CANCELLED)
            return
        child = self._child
        if not self.runs(job) or child is None:
            return
        log.info("cancelling running job %s", job.id)
        self._send(child, msg.CancelJob(job_id=job.id))
        asyncio.get_running_loop().call_later(self._cancel_grace, self._kill_for, job, "cancelled", msg.FAULT_CANCELLED)
