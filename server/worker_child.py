"""The worker process: loads the generator once, then runs one job at a time.

This module's functions run only in the spawned child. It is the one server module that reaches
``pipelines``, and it does so inside ``run_worker`` so that the API process, which imports this
module to name the child's entry point, never loads torch.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from server.messages import (
    FAULT_INPUT,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
    Shutdown,
    SubmitJob,
    WorkerLoadFailed,
    WorkerReady,
)
from server.settings import Settings


@dataclass(frozen=True)
class WorkerConfig:
    model: str
    weights: str = "weights"
    recipe: str = "two-stage"
    device: str = "auto"
    dtype: str = "auto"
    offload: str = "auto"
    fp8: bool = False
    x264_preset: str = ""
    x264_crf: int = -1
    steps: int = 0
    nice: int = 0


def worker_config_from(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        model=settings.model,
        weights=settings.weights,
        recipe=settings.recipe,
        device=settings.device,
        dtype=settings.dtype,
        offload=settings.offload,
        fp8=settings.fp8,
        x264_preset=settings.x264_preset,
        x264_crf=settings.x264_crf,
        steps=settings.steps,
        nice=settings.worker_nice,
    )


def run_worker(conn: Connection, config: WorkerConfig) -> None:
    """Entry point of the child process."""
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
    except BaseException as exc:  # noqa: BLE001 - any load failure must reach the API process as a value
        conn.send(WorkerLoadFailed(error=describe_load_failure(exc)))
        return
    description = getattr(generator, "description", config.model)
    conn.send(WorkerReady(model=config.model, load_seconds=time.monotonic() - started, description=description))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the API process is gone
        if isinstance(message, Shutdown):
            return
        if isinstance(message, SubmitJob):
            conn.send(run_job(generator, message, conn))


def load_generator_for(config: WorkerConfig):
    """``module:factory`` names a test generator; anything else is a model pipelines knows."""
    if ":" in config.model:
        module_name, factory_name = config.model.split(":", 1)
        factory = getattr(importlib.import_module(module_name), factory_name)
        return factory()
    from pipelines import load_generator

    return load_generator(
        config.model,
        weights=config.weights,
        recipe=config.recipe,
        device=config.device,
        dtype=config.dtype,
        offload=config.offload,
        fp8=config.fp8,
        x264_preset=config.x264_preset or None,
        x264_crf=config.x264_crf if config.x264_crf >= 0 else None,
        num_inference_steps=config.steps or None,
    )


def describe_load_failure(exc: BaseException) -> str:
    """Errors the user can act on (missing weights, a GPU too small) read as one clear message;
    anything else carries its traceback for the log."""
    from pipelines.offload import InsufficientGpuMemory
    from pipelines.weights import WeightsIncomplete

    if isinstance(exc, (WeightsIncomplete, InsufficientGpuMemory)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{_traceback_tail(exc)}"


def weights_problems(config: WorkerConfig) -> list[str]:
    """Checks the model's files before the server starts, so a missing download is a start-up error.

    Runs in the API process: pipelines.weights is plain file checks (no torch), imported lazily.
    """
    if config.model != "ltx-2-19b":
        return []
    from pipelines.weights import check_weights

    return check_weights(Path(config.weights))


def run_job(generator, job: SubmitJob, conn: Connection) -> JobSucceeded | JobFailed:
    from pipelines.interface import GenerationParams, GpuOutOfMemory, InvalidInputError, MuxError

    conn.send(JobStarted(job_id=job.job_id))

    def report_progress(stage: str, step: int, total: int) -> None:
        conn.send(JobProgress(job_id=job.job_id, stage=stage, step=step, total_steps=total))

    params = GenerationParams(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        width=job.width,
        height=job.height,
        num_frames=job.num_frames,
        fps=job.fps,
        seed=job.seed,
        guidance_scale=job.guidance_scale,
    )
    _reset_gpu_peak()
    started = time.monotonic()
    try:
        result = generator.generate(params, Path(job.image_path), Path(job.output_path), report_progress)
    except InvalidInputError as exc:
        return JobFailed(job_id=job.job_id, error=str(exc), fault=FAULT_INPUT)
    except MuxError as exc:
        return JobFailed(job_id=job.job_id, error=f"encoding the video failed: {exc}")
    except GpuOutOfMemory as exc:
        return JobFailed(job_id=job.job_id, error=str(exc))
    except MemoryError:
        return JobFailed(job_id=job.job_id, error="generation ran out of memory")
    except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
        return JobFailed(job_id=job.job_id, error=f"generation failed: {type(exc).__name__}: {exc}")
    return JobSucceeded(
        job_id=job.job_id,
        output_path=str(result.output_path),
        seed=result.seed,
        inference_seconds=time.monotonic() - started,
        stage_seconds=dict(result.stage_seconds),
        peak_gpu_memory_bytes=_gpu_peak_bytes(),
    )


def _cuda():
    """torch.cuda when the generator loaded torch and a GPU is there; the worker never loads torch itself."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPU figure
        return None


def _reset_gpu_peak() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def _gpu_peak_bytes() -> int:
    cuda = _cuda()
    return int(cuda.max_memory_allocated()) if cuda is not None else 0


def _traceback_tail(exc: BaseException, limit: int = 2000) -> str:
    text = "".join(traceback.format_exception(exc))
    return text[-limit:]
