"""The contract between the worker process and a generator, and the one type of a job's parameters.

Plain values only, so the worker can turn any outcome into a message for the API process. Torch-free
(as is ``pipelines/__init__``): the API process imports this module for ``JobSpec``.
"""

from __future__ import annotations

from dataclasses import MISSING as _MISSING
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

# What a job makes: video from an image (frame 0, plus optional keyframes) or from the prompt alone.
TASK_I2V = "i2v"
TASK_T2V = "t2v"
TASKS = (TASK_I2V, TASK_T2V)


@dataclass(frozen=True)
class Keyframe:
    """An image the video passes through: output frame ``frame`` (0-based), held with ``strength``
    (1: kept exactly, 0: free). Its pixels travel as a file beside the spec (pipelines/inputs.py)."""

    frame: int
    strength: float = 1.0


@dataclass(frozen=True)
class LoraChoice:
    """One of the server's LoRAs (by file name, without .safetensors) applied at ``scale``."""

    name: str
    scale: float = 1.0


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
    task: str = TASK_I2V
    keyframes: tuple[Keyframe, ...] = ()
    loras: tuple[LoraChoice, ...] = ()
    enhance_prompt: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, one key per field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JobSpec:
        """The spec ``to_dict`` wrote (keys it does not know are ignored; a missing one without a default is a
        KeyError, so a record written before a field existed reads back with the field's default)."""
        known = {f.name: values[f.name] for f in fields(cls) if f.name in values or f.default is _MISSING}
        known["keyframes"] = tuple(_as(Keyframe, item) for item in known.get("keyframes", ()))
        known["loras"] = tuple(_as(LoraChoice, item) for item in known.get("loras", ()))
        return cls(**known)

    @property
    def has_input_bundle(self) -> bool:
        """Whether the job's input file is a bundle of images (pipelines/inputs.py) rather than the image."""
        return self.task != TASK_I2V or bool(self.keyframes)


def _as(kind, item):
    return item if isinstance(item, kind) else kind(**item)


@dataclass(frozen=True)
class GenerationResult:
    output_path: Path
    seed: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # The prompt the video was made from when the request asked for enhance_prompt; None otherwise.
    enhanced_prompt: str | None = None


# on_progress(stage, step, total_steps); stage is one of "encoding_prompt", "denoising",
# "decoding_audio", "decoding_video" (step = frames decoded), "muxing".
# It may raise (e.g. to cancel): generators must let the exception propagate.
ProgressCallback = Callable[[str, int, int], None]


class ContentBlocked(Exception):
    """The content policy (pipelines/moderation.py) refused the request or its output; the message is the reason."""


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
        image_path: Path | None,  # None for text-to-video
        output_path: Path,
        on_progress: ProgressCallback,
        keyframe_paths: Sequence[Path] = (),  # one image file per params.keyframes, in order
    ) -> GenerationResult: ...
