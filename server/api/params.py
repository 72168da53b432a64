"""The parameters of ``ltx-2-19b-i2v``, as Segmind publishes them, of the text-to-video slug ``ltx-2-19b-t2v``
(the same minus ``image``), the fields this server adds (keyframes, LoRAs, prompt enhancement), and their
validation messages."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.interface import TASK_I2V, TASK_T2V, JobSpec, Keyframe, LoraChoice
from pipelines.lora_files import MAX_LORAS_PER_REQUEST
from server.observability.redaction import control_character_error, redact_urls_in

MODEL_SLUG = "ltx-2-19b-i2v"
T2V_SLUG = "ltx-2-19b-t2v"
MAX_KEYFRAMES = 8
MAX_LORAS = MAX_LORAS_PER_REQUEST
LORA_SCALE_LIMIT = 2.0
MAX_NUM_FRAMES = 400
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, still frame, frames, watermark, overlay, titles, has blurbox, has subtitles"
)
MAX_PROMPT_CHARS = 10_000
SEED_MAX = 2**32 - 1
# Room for a 20 MB image as base64 inside a data URI.
MAX_IMAGE_CHARS = 28_000_000


# The unknown body fields of the request being validated (answered in x-ignored-fields): a list the
# middleware of server/api/ignored_fields.py sets per request; None elsewhere (the CLI), where none are noted.
_ignored_fields: ContextVar[list[str] | None] = ContextVar("ltx2_ignored_fields", default=None)


@contextmanager
def collect_ignored_fields() -> Iterator[list[str]]:
    """Within this block, validating an I2VParams body adds its unknown keys to the yielded list."""
    names: list[str] = []
    token = _ignored_fields.set(names)
    try:
        yield names
    finally:
        _ignored_fields.reset(token)


def _refuse_booleans(value: Any) -> Any:
    # JSON true/false would otherwise pass as 1/0.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _refuse_control_characters_in_url(value: str) -> str:
    # Only a URL: base64 data (bare or in a data URI) may come wrapped in lines.
    text = value.strip()
    if "://" in text[:32] and not text[:5].lower().startswith("data:"):
        reason = control_character_error(value)
        if reason:
            raise ValueError(reason)
    return value


class KeyframeParam(BaseModel):
    """One image the video passes through, at a frame after the first (frame 0 is the request's ``image``)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        ...,
        min_length=1,
        max_length=MAX_IMAGE_CHARS,
        description="The keyframe's image: an http(s) URL, a data URI, or a bare base64 string (as `image`).",
    )
    frame: int = Field(
        ..., ge=1, le=MAX_NUM_FRAMES - 1, description="Output frame (0-based) the image is placed at; below num_frames."
    )
    strength: float = Field(
        1.0, ge=0, le=1, description="How firmly the frame holds the image: 1 exactly, 0 not at all."
    )

    _image_url = field_validator("image")(_refuse_control_characters_in_url)
    _numbers = field_validator("frame", "strength", mode="before")(_refuse_booleans)


class LoraParam(BaseModel):
    """One of the server's LoRAs (GET /v1/loras) and the scale it is applied at."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=128, description="The LoRA's name, as GET /v1/loras lists it.")
    scale: float = Field(
        1.0, ge=-LORA_SCALE_LIMIT, le=LORA_SCALE_LIMIT, description="How strongly it is applied (1: as trained)."
    )

    _numbers = field_validator("scale", mode="before")(_refuse_booleans)


class T2VParams(BaseModel):
    """Request body of ``POST /v1/ltx-2-19b-t2v`` and ``POST /v2/ltx-2-19b-t2v``: the i2v parameters without
    ``image`` (and ``keyframes``)."""

    # Unknown keys are ignored, as Segmind does; clients often send extras such as base64 flags.
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _note_ignored_fields(cls, data: Any) -> Any:
        sink = _ignored_fields.get()
        if sink is not None and isinstance(data, dict):
            sink.extend(str(key) for key in data if key not in cls.model_fields)
        return data

    prompt: str = Field(
        ...,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="Prompt describing the video scene.",
        examples=["A woman walks toward the camera and waves, soft daylight"],
    )
    negative_prompt: str = Field(
        DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT_CHARS, description="Negative prompt to avoid certain elements."
    )
    width: int = Field(720, ge=256, le=1280, description="Width of the output video, in pixels.")
    height: int = Field(1280, ge=256, le=1280, description="Height of the output video, in pixels.")
    num_frames: int = Field(181, ge=1, le=MAX_NUM_FRAMES, description="Number of frames to generate.")
    fps: int = Field(24, ge=1, le=30, description="Frames per second.")
    seed: int = Field(42, ge=-1, le=SEED_MAX, description="Random seed for reproducibility; -1 picks one at random.")
    guidance_scale: float = Field(4.0, ge=1, le=20, description="Guidance scale for prompt adherence.")
    # Beyond Segmind's parameters (its clients never send them).
    loras: list[LoraParam] = Field(
        default_factory=list,
        max_length=MAX_LORAS,
        description=f"Up to {MAX_LORAS} of the server's LoRAs (GET /v1/loras) to apply, each with its scale.",
    )
    enhance_prompt: bool = Field(
        False,
        strict=True,
        description="Rewrite the prompt into a detailed one with the model's own text encoder before generating "
        "(image-aware for image-to-video); the rewritten prompt is returned as `enhanced_prompt`.",
    )
    webhook: str | None = Field(
        None,
        description=(
            "Optional http(s) URL that receives the final result body by POST, signed with "
            "x-ltx2-signature: sha256=<HMAC-SHA256 of the body under the server's webhook secret>."
        ),
        examples=["https://example.com/ltx2-callback"],
    )

    @field_validator("webhook")
    @classmethod
    def _safe_webhook(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from server.jobs.webhooks import check_webhook_url

        return check_webhook_url(value)

    _numbers = field_validator("width", "height", "num_frames", "fps", "seed", "guidance_scale", mode="before")(
        _refuse_booleans
    )

    @field_validator("loras")
    @classmethod
    def _each_lora_once(cls, value: list[LoraParam]) -> list[LoraParam]:
        names = [lora.name for lora in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each LoRA at most once; {', '.join(repeated)} is repeated")
        return value

    @property
    def task(self) -> str:
        return TASK_T2V

    def input_images(self) -> tuple[str | None, list[str]]:
        """The request's images as sent: (image or None, one per keyframe)."""
        return None, []


class I2VParams(T2VParams):
    """Request body of ``POST /v1/ltx-2-19b-i2v`` and ``POST /v2/ltx-2-19b-i2v``."""

    image: str = Field(
        ...,
        min_length=1,
        max_length=MAX_IMAGE_CHARS,
        description="Input image: an http(s) URL, a data URI, or a bare base64 string.",
        examples=["https://example.com/portrait.png"],
    )
    keyframes: list[KeyframeParam] = Field(
        default_factory=list,
        max_length=MAX_KEYFRAMES,
        description=f"Up to {MAX_KEYFRAMES} further images the video passes through, each at its own frame "
        "(frame 0 is `image`).",
    )

    _image_url = field_validator("image")(_refuse_control_characters_in_url)

    @model_validator(mode="after")
    def _keyframes_inside_the_clip(self) -> "I2VParams":
        if self.keyframes and self.num_frames < 2:
            raise ValueError("keyframes: a 1-frame video has no frame after the image's; send none")
        seen: set[int] = set()
        for index, keyframe in enumerate(self.keyframes):
            if keyframe.frame >= self.num_frames:
                raise ValueError(
                    f"keyframes[{index}].frame: must be an integer from 1 to {self.num_frames - 1} (below num_frames "
                    f"{self.num_frames}); got {keyframe.frame}"
                )
            if keyframe.frame in seen:
                raise ValueError(f"keyframes[{index}].frame: frame {keyframe.frame} has a keyframe already")
            seen.add(keyframe.frame)
        return self

    @property
    def task(self) -> str:
        return TASK_I2V

    def input_images(self) -> tuple[str | None, list[str]]:
        return self.image, [keyframe.image for keyframe in self.keyframes]


def job_spec(params: T2VParams) -> JobSpec:
    """The job's parameters from a validated request (the images and the webhook are kept apart); a seed
    of -1 becomes the one picked for the job, so the worker, the response and a rerun all see it."""
    seed = secrets.randbelow(SEED_MAX + 1) if params.seed == -1 else params.seed
    plain = {"prompt", "negative_prompt", "width", "height", "num_frames", "fps", "guidance_scale", "enhance_prompt"}
    keyframes = getattr(params, "keyframes", [])
    return JobSpec(
        **params.model_dump(include=plain),
        seed=seed,
        task=params.task,
        keyframes=tuple(Keyframe(frame=item.frame, strength=item.strength) for item in keyframes),
        loras=tuple(LoraChoice(name=item.name, scale=item.scale) for item in params.loras),
    )


def allowed_range_text(name: str) -> str:
    """'an integer from 256 to 1280' and the like, read off the model's own constraints (``name``: a field of
    the request, or a path into one such as ``keyframes[0].frame``)."""
    info = _field_at(name)
    if info is None:
        return ""
    low = high = min_len = max_len = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
        min_len = getattr(item, "min_length", min_len)
        max_len = getattr(item, "max_length", max_len)
    leaf = _leaf_name(name)
    if getattr(info.annotation, "__origin__", None) is list:
        return _KIND_OF_FIELD.get(leaf, "a list") + (f", at most {max_len}" if max_len is not None else "")
    kinds: dict[object, str] = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    kind = _KIND_OF_FIELD.get(leaf) or kinds.get(info.annotation, "a value")
    if low == -1 and high is not None:  # -1 is a special value (seed: pick one at random)
        return f"{kind}: -1, or 0 to {_plain(high)}"
    if low is not None and high is not None:
        return f"{kind} from {_plain(low)} to {_plain(high)}"
    if max_len is not None:
        return f"{kind} of {min_len or 0} to {max_len} characters"
    return kind


_KIND_OF_FIELD = {
    "image": "an http(s) URL, a data URI or base64 image data as a string",
    "webhook": "an http(s) URL of at most 2048 characters without control characters, "
    "not at a link-local or cloud-metadata address",
    "keyframes": "a list of {\"image\", \"frame\", \"strength\"} objects",
    "loras": "a list of {\"name\", \"scale\"} objects",
}


def _leaf_name(name: str) -> str:
    return name.rsplit(".", 1)[-1].split("[", 1)[0]


def _field_at(name: str):
    """The pydantic field a request path names (``keyframes[0].frame``), looked up in the i2v body (a superset)."""
    model: Any = I2VParams
    info = None
    for part in name.split("."):
        if model is None:
            return None
        info = model.model_fields.get(part.split("[", 1)[0])
        if info is None:
            return None
        items = getattr(info.annotation, "__args__", ()) if getattr(info.annotation, "__origin__", None) is list else ()
        model = items[0] if items and isinstance(items[0], type) and issubclass(items[0], BaseModel) else None
    return info


def _path_text(loc: list[str | int]) -> str:
    """('keyframes', 0, 'frame') -> 'keyframes[0].frame'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _plain(number: Any) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def describe_validation_error(error: Mapping[str, Any], document: object = None) -> str:
    """One sentence for one pydantic error, naming the field and its allowed range (``document``: the body as
    sent, so that invalid JSON is answered with where it breaks)."""
    loc = [part for part in error.get("loc", ()) if part != "body"]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return _json_error_text(error, document)
    if kind == "json_type":
        return f"request body is not valid JSON: {error.get('msg', '')}".rstrip(": ")
    # A check across fields (keyframes inside num_frames) names its field in its own message.
    reason = error.get("ctx", {}).get("error") if kind == "value_error" else None
    if not loc and reason:
        return str(reason)
    if not loc:
        if kind == "missing":
            return "request body is required: a JSON object with the model's parameters"
        return "request body must be a JSON object with the model's parameters (Content-Type: application/json)"
    name = _path_text(loc)
    if isinstance(loc[-1], int) and kind in ("model_type", "dict_type"):
        allowed = _allowed_keys(_field_at(_path_text([part for part in loc if not isinstance(part, int)])))
        return f"{name}: must be an object with {allowed}" + _got_text(error.get("input"))
    if kind == "extra_forbidden":
        parent = _field_at(_path_text([part for part in loc[:-1] if not isinstance(part, int)]))
        allowed = _allowed_keys(parent)
        return f"{name}: not a field here" + (f" (allowed: {allowed})" if allowed else "")
    if kind == "missing":
        return f"{name}: required ({allowed_range_text(name)})"
    got_text = _got_text(error.get("input"))
    expected = allowed_range_text(name)
    # A validator's own reason (a control character, a refused address) says what is wrong exactly.
    reason_text = f" ({redact_urls_in(str(reason))})" if reason else ""
    if expected:
        return f"{name}: must be {expected}{reason_text}{got_text}"
    return f"{name}: {error.get('msg', 'invalid')}"


def _got_text(got: Any) -> str:
    if isinstance(got, str):
        got = redact_urls_in(got)  # a URL's credentials are not repeated back, nor logged
    return f"; got {got!r}" if not isinstance(got, (dict, list)) and len(repr(got)) < 80 else ""


def _allowed_keys(info) -> str:
    items = getattr(info.annotation, "__args__", ()) if info is not None else ()
    model = items[0] if items and isinstance(items[0], type) and issubclass(items[0], BaseModel) else None
    return ", ".join(model.model_fields) if model is not None else ""


def _json_error_text(error: Mapping[str, Any], document: object) -> str:
    """'request body is not valid JSON: Expecting ',' delimiter at line 3, column 5 (character 27)'."""
    reason = str((error.get("ctx") or {}).get("error") or error.get("msg") or "JSON decode error")
    positions = [part for part in error.get("loc", ()) if isinstance(part, int)]
    if not positions:
        return f"request body is not valid JSON: {reason}"
    pos = positions[-1]
    if isinstance(document, (bytes, bytearray)):
        document = bytes(document).decode("utf-8", "replace")
    if isinstance(document, str) and 0 <= pos <= len(document):
        line = document.count("\n", 0, pos) + 1
        column = pos - (document.rfind("\n", 0, pos) + 1) + 1
        return f"request body is not valid JSON: {reason} at line {line}, column {column} (character {pos + 1})"
    return f"request body is not valid JSON: {reason} at character {pos + 1}"
