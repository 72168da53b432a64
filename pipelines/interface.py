"""The contract between the worker process and a generator, and the one type of a job's parameters.

Plain values only, so the worker can turn any outcome into a message for the API process. Torch-free
(as is ``pipelines/__init__``): the API process imports this module for ``JobSpec``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol


@dataclass(frozen=True)
class JobSpec:
    """What to generate: a request's parameters after validation, the one shape they take from there on.

    The API builds it from the validated request (``server.api.params.job_spec``: ranges checked, a seed of
    -1 already replaced by the one picked), the job keeps it (a store saves ``to_dict()`` and reads it
    back with ``from_dict``), ``server.workers.messages.SubmitJob`` carries it to the worker child, and the
    generator receives it. The input image and the video are files, named beside it, not in it.
    """

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    seed: int
    guidance_scale: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, one key per field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JobSpec:
        """The spec ``to_dict`` wrote (keys it does not know are ignored; a missing one is a KeyError)."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class GenerationResult:
    output_path: Path
    seed: int
    stage_seconds: dict[str, float] = field(default_factory=dict)


# on_progress(stage, step, total_steps); stage is one of "encoding_prompt", "denoising",
# "decoding_audio", "decoding_video" (step = frames decoded), "muxing". It may raise (e.g. to cancel): generators must let the exception propagate.
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
        params: JobSpec,
        image_path: Path,
        output_path: Path,
        on_progress: ProgressCallback,
    ) -> GenerationResult: ...
