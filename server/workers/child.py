"""The worker process: loads the generator once, then runs one job at a time on the GPU; with ``overlap_mux``
the mux of a job (ffmpeg finishing its video) runs on while the next job denoises. The one server module that
reaches ``pipelines``, only inside the spawned child, so the API process (which imports this module to
name the child's entry point) never loads torch.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from server.settings import Settings, parse_plan_size
from server.workers import messages as msg
from server.workers.devices import WorkerDevice

if TYPE_CHECKING:
    from pipelines.moderation import Moderation

# Settings a worker passes on to pipelines.load_generator as they are, under the same names.
_AS_IS = (
    "weights", "recipe", "guidance", "dtype", "offload", "fp8",
    "stage2_lora", "compile", "attention", "decode_chunk_frames", "loras",
)  # fmt: skip


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker child needs to load its generator and place itself. None is "the model's own default" (or
    torch's): the settings' sentinels ("" / -1 / 0) are translated by ``worker_config_from`` and nowhere else."""

    model: str  # a model pipelines knows (never "auto": resolved already), or module:factory
    weights: str = "weights"
    recipe: str = "two-stage"
    guidance: str = "ltx-pipelines"
    device: str = "auto"
    dtype: str = "auto"
    offload: str = "auto"
    fp8: str = "off"
    stage2_lora: str = "adapter"
    compile: str = "off"
    attention: str = "auto"
    decode_chunk_frames: int = 48
    cache_negative_prompt: bool = True
    plan_request: tuple[int, int, int] | None = None  # the largest request --offload auto budgets for
    x264_preset: str | None = None
    x264_crf: int | None = None
    steps: int | None = None
    nice: int = 0  # CPU niceness added to the child's
    # One physical GPU index for this worker (--gpus); it then sees that GPU alone, as ``cuda``.
    cuda_visible_devices: str | None = None
    threads: int | None = None  # CPU threads for torch and BLAS (None: their default, one per core)
    # on: take the next job once this one's frames are decoded, while its mux finishes (JobDecoded);
    # auto: on when the generator runs on CUDA.
    overlap_mux: str = "auto"
    loras: str = ""  # folder of LoRAs requests may apply ("": none)
    moderation: str = ""  # content policy checker, module:factory or "wordlist" ("": none)


def worker_config_from(settings: Settings, device: WorkerDevice | None = None) -> WorkerConfig:
    """The worker's config; ``device`` (one of ``worker_devices``) places it, else ``--device`` does."""
    return WorkerConfig(
        model=settings.resolved_model(),
        device=device.device if device else settings.device,
        cuda_visible_devices=(device.cuda_visible_devices if device else "") or None,
        threads=(device.threads if device else settings.worker_threads) or None,
        x264_preset=settings.x264_preset or None,
        x264_crf=settings.x264_crf if settings.x264_crf >= 0 else None,
        steps=settings.steps or None,
        nice=settings.worker_nice,
        overlap_mux=settings.overlap_mux,
        moderation=settings.moderation,
        cache_negative_prompt=settings.negative_prompt_cache,
        plan_request=parse_plan_size(settings.plan_size) if settings.plan_size else None,
        recipe=settings.resolved_recipe(),
        **{name: getattr(settings, name) for name in _AS_IS if name != "recipe"},
    )


def run_worker(conn: Connection, config: WorkerConfig) -> None:
    die_with_parent()
    place_on_device(config)
    # Ctrl-C, `timeout` and service managers signal the whole process group; the API process alone
    # decides when the worker stops (Shutdown message, or the pipe closing if it dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.nice:
        # On a CPU-bound worker (the tiny model, or CPU-side work on a GPU host) the API process
        # must still win the CPU, or status polls queue behind generation.
        os.nice(config.nice)
    started = time.monotonic()
    try:
        generator = load_generator_for(config)
        moderation = load_moderation(config.moderation)
    except BaseException as exc:  # noqa: BLE001 - any load failure must reach the API process as a value
        conn.send(msg.WorkerLoadFailed(error=describe_load_failure(exc)))
        return
    inbox = Inbox(conn)
    outbox = Outbox(conn)
    description = getattr(generator, "description", config.model)
    outbox.send(msg.WorkerReady(model=config.model, load_seconds=time.monotonic() - started, description=description))
    serve_jobs(generator, inbox, outbox, overlaps_mux(config.overlap_mux), moderation)


def overlaps_mux(setting: str) -> bool:
    """auto is off for now: on the CPU the next job's denoising and this one's x264 encode share the cores (no
    reliable gain measured, docs/benchmarks.md), and the gain on a GPU is not yet measured; a default that
    changes how jobs run waits for that measurement."""
    return setting == "on"


def serve_jobs(
    generator, inbox: Inbox, outbox: Outbox, overlap_mux: bool, moderation: Moderation | None = None
) -> None:
    """Runs each job on a thread of its own. Without overlap, one job at a time from start to end; with it,
    the next job is taken once this one's GPU part is over, while its mux finishes: at most one job on the
    GPU and one muxing, so a job waits for the mux before it (if still running) before announcing its own."""
    muxing: threading.Thread | None = None
    while True:
        message = inbox.next()
        if message is None or isinstance(message, msg.Shutdown):
            if muxing is not None and message is not None:
                muxing.join()  # told to stop: the supervisor cancelled it if it must not finish
            return  # told to stop, or the API process is gone
        if not isinstance(message, msg.SubmitJob):
            continue
        job = JobThread(generator, message, inbox, outbox, moderation)
        if not overlap_mux:
            job.thread.join()
            continue
        job.gpu_done.wait()
        if muxing is not None:
            muxing.join()
        if job.thread.is_alive():
            outbox.send(msg.JobDecoded(job_id=message.job_id))
        muxing = job.thread


class Outbox:
    """The child's only writer to the pipe: a job's thread and the main loop both send, one message at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._conn.send(message)


class JobThread:
    """One job, run on its own thread; ``gpu_done`` is set once it is muxing only (or over)."""

    def __init__(
        self, generator, job: msg.SubmitJob, inbox: Inbox, outbox: Outbox, moderation: Moderation | None = None
    ) -> None:
        self.gpu_done = threading.Event()
        self._job = job
        self._inbox = inbox
        self._moderation = moderation
        self.thread = threading.Thread(
            target=self._run, args=(generator, outbox), name=f"ltx2-job-{job.job_id}", daemon=True
        )
        self.thread.start()

    def _run(self, generator, outbox: Outbox) -> None:
        try:
            job, cancelled = self._job, self._inbox.is_cancelled
            outbox.send(run_job(generator, job, outbox, cancelled, self.gpu_done, self._moderation))
        finally:
            self._inbox.forget(self._job.job_id)
            self.gpu_done.set()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so killing the API process (even with
    SIGKILL, which runs no clean-up) never leaves a worker generating for nobody. The signal follows
    the parent *thread* that spawned us: the supervisor spawns from the event loop's thread, which
    lives as long as the supervisor does. A no-op where prctl is missing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before the request took effect


def place_on_device(config: WorkerConfig) -> None:
    """Pin this worker to its GPU and cap its threads, before anything imports torch: CUDA reads
    CUDA_VISIBLE_DEVICES, and OpenMP and BLAS their thread counts, once, when they start. (Torch's
    own count is set by the generator, which is passed ``config.threads`` too.)"""
    if config.cuda_visible_devices:
        # Number GPUs as nvidia-smi does (by PCI bus), so --gpus 2 is nvidia-smi's GPU 2.
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = config.cuda_visible_devices
    if config.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(config.threads)


class JobCancelled(BaseException):
    """Raised from the progress callback to stop a cancelled job. A BaseException, like
    KeyboardInterrupt, so that a generator's broad `except Exception` cannot swallow it."""


class Inbox:
    """The child's only reader of the pipe, on a thread of its own: while the main thread is inside
    ``generate()``, a CancelJob must still be seen between denoising steps. Cancellations go into a set the
    progress callback checks, everything else waits in a queue for the main loop (rather than a shared
    multiprocessing.Event: every request to the child stays a message on the one pipe)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._messages: queue.Queue = queue.Queue()
        self._cancelled: set[str] = set()
        threading.Thread(target=self._read, name="ltx2-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._messages.put(None)
                return
            if isinstance(message, msg.CancelJob):
                self._cancelled.add(message.job_id)
            else:
                self._messages.put(message)

    def next(self) -> object:
        return self._messages.get()

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self._cancelled

    def forget(self, job_id: str) -> None:
        self._cancelled.discard(job_id)


def load_generator_for(config: WorkerConfig):
    """``module:factory`` names a test generator; anything else is a model pipelines knows."""
    if ":" in config.model:
        module_name, factory_name = config.model.split(":", 1)
        factory = getattr(importlib.import_module(module_name), factory_name)
        return factory()
    from pipelines import load_generator

    names = (*_AS_IS, "device", "x264_preset", "x264_crf", "cache_negative_prompt", "plan_request")
    options = {name: getattr(config, name) for name in names}
    return load_generator(config.model, num_inference_steps=config.steps, num_threads=config.threads, **options)


def load_moderation(spec: str) -> Moderation | None:
    """The content policy's checker (--moderation), loaded once with the generator; None when there is none."""
    if not spec:
        return None
    from pipelines.moderation import Moderation, load_checker

    return Moderation(load_checker(spec))


def describe_load_failure(exc: BaseException) -> str:
    """What the user can act on (missing weights, a GPU too small, a checker that will not load) in one message;
    anything else with its traceback."""
    from pipelines.moderation import CheckerLoadError
    from pipelines.offload import InsufficientGpuMemory
    from pipelines.weights import WeightsIncomplete

    if isinstance(exc, (WeightsIncomplete, InsufficientGpuMemory, CheckerLoadError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))[-2000:]}"


def weights_problems(config: WorkerConfig) -> list[str]:
    """The model's missing files, before anything starts; runs in the API process (plain file checks, no torch)."""
    if ":" in config.model:
        return []
    from pipelines.generations import check_weights

    return check_weights(config.model, config.weights, config.recipe)


def run_job(
    generator,
    job: msg.SubmitJob,
    conn: Connection | Outbox,
    is_cancelled=lambda job_id: False,
    gpu_done: threading.Event | None = None,
    moderation: Moderation | None = None,
) -> msg.JobSucceeded | msg.JobFailed:
    """Runs ``job``; ``gpu_done`` is set once it reports "muxing" (every frame decoded: the GPU is free).
    ``moderation`` (a pipelines.moderation.Moderation) checks the request before and the video after."""
    from pipelines.inputs import unpack_inputs
    from pipelines.interface import ContentBlocked, GpuOutOfMemory, InvalidInputError, MuxError
    from pipelines.moderation import CheckerFailed
    from pipelines.mux import stop_muxing_when

    conn.send(msg.JobStarted(job_id=job.job_id))
    cuda = _cuda()
    peak_gpu_bytes: list[int] = []  # read when the GPU part ends: a next job may be on the GPU during the mux

    def stop_if_cancelled() -> None:
        if is_cancelled(job.job_id):
            raise JobCancelled

    def report_progress(stage: str, step: int, total: int) -> None:
        # The generator calls this between denoising steps and before decoding: a cancelled job
        # stops here, without decoding or muxing what it has so far.
        stop_if_cancelled()
        if stage == "muxing" and not peak_gpu_bytes:
            peak_gpu_bytes.append(int(cuda.max_memory_allocated()) if cuda is not None else 0)
            if gpu_done is not None:
                gpu_done.set()
        conn.send(msg.JobProgress(job_id=job.job_id, stage=stage, step=step, total_steps=total))

    if cuda is not None:
        cuda.reset_peak_memory_stats()
    try:
        stop_if_cancelled()
        # A cancel that arrives while ffmpeg finishes (the next job may be denoising meanwhile) stops the mux too.
        with stop_muxing_when(stop_if_cancelled):
            inputs = unpack_inputs(job.spec, Path(job.image_path), Path(job.image_path).parent / "inputs")
            if moderation is not None:
                images = [*([inputs.image] if inputs.image is not None else []), *inputs.keyframes]
                moderation.check_request(job.spec.prompt, images)
            result = generator.generate(
                job.spec, inputs.image, Path(job.output_path), report_progress, keyframe_paths=inputs.keyframes
            )
            if moderation is not None:
                moderation.check_output(Path(result.output_path), job.spec.num_frames, result.enhanced_prompt)
    except JobCancelled:
        return msg.JobFailed(job_id=job.job_id, error="cancelled", fault=msg.FAULT_CANCELLED)
    except InvalidInputError as exc:
        return msg.JobFailed(job_id=job.job_id, error=str(exc), fault=msg.FAULT_INPUT)
    except ContentBlocked as exc:
        return msg.JobFailed(job_id=job.job_id, error=f"content blocked: {exc}", fault=msg.FAULT_CONTENT)
    except CheckerFailed as exc:
        return msg.JobFailed(job_id=job.job_id, error=str(exc))
    except MuxError as exc:
        return msg.JobFailed(job_id=job.job_id, error=f"encoding the video failed: {exc}")
    except GpuOutOfMemory as exc:
        return msg.JobFailed(job_id=job.job_id, error=str(exc))
    except MemoryError:
        return msg.JobFailed(job_id=job.job_id, error="generation ran out of memory")
    except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
        return msg.JobFailed(job_id=job.job_id, error=f"generation failed: {type(exc).__name__}: {exc}")
    return msg.JobSucceeded(
        job_id=job.job_id,
        output_path=str(result.output_path),
        seed=result.seed,
        stage_seconds=dict(result.stage_seconds),
        peak_gpu_memory_bytes=(peak_gpu_bytes or [int(cuda.max_memory_allocated()) if cuda is not None else 0])[0],
        enhanced_prompt=result.enhanced_prompt,
    )


def _cuda():
    """torch.cuda when the generator loaded torch and a GPU is there; the worker never loads torch itself."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda if torch is not None and torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPU figure
        return None
