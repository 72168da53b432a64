"""Messages between the API process and the worker process.

Small frozen dataclasses of plain values: errors cross as strings, images and videos as file paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.interface import JobSpec  # torch-free: the one shape of a job's parameters

# API process -> worker


@dataclass(frozen=True)
class SubmitJob:
    """Run ``spec`` on the image at ``image_path``, writing the video to ``output_path``."""

    job_id: str
    image_path: str
    output_path: str
    spec: JobSpec


@dataclass(frozen=True)
class CancelJob:
    """Stop this job at its next progress report (between denoising steps); ignored if it is not running."""

    job_id: str


@dataclass(frozen=True)
class Shutdown:
    pass


# worker -> API process


@dataclass(frozen=True)
class WorkerReady:
    model: str
    load_seconds: float
    description: str = ""  # what was loaded, and where it lives (offload mode and why)


@dataclass(frozen=True)
class WorkerLoadFailed:
    error: str


@dataclass(frozen=True)
class JobStarted:
    job_id: str


@dataclass(frozen=True)
class JobDecoded:
    """The job's GPU part is over (its last frame is decoded); the child finishes its mux in the background and
    takes the next job now. Its JobSucceeded or JobFailed still follows, once the mux ends."""

    job_id: str


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    stage: str
    step: int
    total_steps: int


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    output_path: str
    seed: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Peak CUDA memory allocated during the job; 0 when not on CUDA.
    peak_gpu_memory_bytes: int = 0
    # The rewritten prompt of a request with enhance_prompt; None otherwise.
    enhanced_prompt: str | None = None


# Why a job failed decides the HTTP code a /v1 caller sees.
FAULT_INPUT = "input"
FAULT_GENERATION = "generation"
# The content policy refused the request or its output (--moderation): a 422 "content blocked: <reason>".
FAULT_CONTENT = "content"
FAULT_CANCELLED = "cancelled"
FAULT_SHUTDOWN = "shutdown"
# Still queued one retention period (--ttl-seconds) after submission: failed by the expiry sweep.
FAULT_EXPIRED = "expired"


@dataclass(frozen=True)
class JobFailed:
    job_id: str
    error: str
    fault: str = FAULT_GENERATION
