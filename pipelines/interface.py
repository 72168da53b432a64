"""The contract between the worker process and a generator.

Plain values only, so the worker can turn any outcome into a message for the API process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol


@dataclass(frozen=True)
class GenerationParams:
    """API parameters after validation (ranges are enforced by the server before a job exists)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    seed: int
    guidance_scale: float


@dataclass(frozen=True)
class GenerationResult:
    output_path: Path
    seed: int
    stage_seconds: dict[str, float] = field(default_factory=dict)


# on_progress(stage, step, total_steps); stage is one of "encoding_prompt", "denoising", "decoding",
# "muxing". It may raise (e.g. to cancel): generators must let the exception propagate.
ProgressCallback = Callable[[str, int, int], None]


class InvalidInputError(Exception):
    """The request's input is at fault (e.g. an image that cannot be decoded): HTTP 400 territory."""


class GpuOutOfMemory(Exception):
    """CUDA ran out of memory during one job; the worker frees what it can and serves the next one."""


class MuxError(Exception):
    """ffmpeg failed; the message carries the tail of its stderr."""


class Generator(Protocol):
    def generate(
        self,
        params: GenerationParams,
        image_path: Path,
        output_path: Path,
        on_progress: ProgressCallback,
    ) -> GenerationResult: ...
