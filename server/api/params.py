"""The parameters of ``ltx-2-19b-i2v``, as Segmind publishes them, and their validation messages."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import fields
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.interface import JobSpec
from server.observability.redaction import control_character_error, redact_urls_in

MODEL_SLUG = "ltx-2-19b-i2v"
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


class I2VParams(BaseModel):
    """Request body of ``POST /v1/ltx-2-19b-i2v`` and ``POST /v2/ltx-2-19b-i2v``."""

    # Unknown keys are ignored, as Segmind does; clients often send extras such as base64 flags.
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _note_ignored_fields(cls, data: Any) -> Any:
        sink = _ignored_fields.get()
        if sink is not None and isinstance(data, dict):
            sink.extend(str(key) for key in data if key not in cls.model_fields)
        return data

    image: str = Field(
        ...,
        min_length=1,
        max_length=MAX_IMAGE_CHARS,
        description="Input image: an http(s) URL, a data URI, or a bare base64 string.",
        examples=["https://example.com/portrait.png"],
    )
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
    num_frames: int = Field(181, ge=1, le=400, description="Number of frames to generate.")
    fps: int = Field(24, ge=1, le=30, description="Frames per second.")
    seed: int = Field(42, ge=-1, le=SEED_MAX, description="Random seed for reproducibility; -1 picks one at random.")
    guidance_scale: float = Field(4.0, ge=1, le=20, description="Guidance scale for prompt adherence.")
    # Beyond Segmind's parameters (its clients never send it).
    webhook: str | None = Field(
        None,
        description=(
            "Optional http(s) URL that receives the final result body by POST, signed with "
            "x-ltx2-signature: sha256=<HMAC-SHA256 of the body under the server's webhook secret>."
        ),
        examples=["https://example.com/ltx2-callback"],
    )

    @field_validator("image")
    @classmethod
    def _no_control_characters_in_image_url(cls, value: str) -> str:
        # Only a URL: base64 data (bare or in a data URI) may come wrapped in lines.
        text = value.strip()
        if "://" in text[:32] and not text[:5].lower().startswith("data:"):
            reason = control_character_error(value)
            if reason:
                raise ValueError(reason)
        return value

    @field_validator("webhook")
    @classmethod
    def _safe_webhook(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from server.jobs.webhooks import check_webhook_url

        return check_webhook_url(value)

    @field_validator("width", "height", "num_frames", "fps", "seed", "guidance_scale", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        # JSON true/false would otherwise pass as 1/0.
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        return value


def job_spec(params: I2VParams) -> JobSpec:
    """The job's parameters from a validated request (the image and the webhook are kept apart); a seed
    of -1 becomes the one picked for the job, so the worker, the response and a rerun all see it."""
    seed = secrets.randbelow(SEED_MAX + 1) if params.seed == -1 else params.seed
    values = params.model_dump(include={field.name for field in fields(JobSpec)})
    return JobSpec(**{**values, "seed": seed})


def allowed_range_text(name: str) -> str:
    """'an integer from 256 to 1280' and the like, read off the model's own constraints."""
    info = I2VParams.model_fields.get(name)
    if info is None:
        return ""
    low = high = min_len = max_len = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
        min_len = getattr(item, "min_length", min_len)
        max_len = getattr(item, "max_length", max_len)
    kinds: dict[object, str] = {int: "an integer", float: "a number", str: "a string"}
    kind = _KIND_OF_FIELD.get(name) or kinds.get(info.annotation, "a value")
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
}


def _plain(number: Any) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def describe_validation_error(error: Mapping[str, Any], document: object = None) -> str:
    """One sentence for one pydantic error, naming the field and its allowed range (``document``: the body as
    sent, so that invalid JSON is answered with where it breaks)."""
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    kind = error.get("type", "")
    if kind == "json_invalid":
        return _json_error_text(error, document)
    if kind == "json_type":
        return f"request body is not valid JSON: {error.get('msg', '')}".rstrip(": ")
    if not loc:
        if kind == "missing":
            return "request body is required: a JSON object with the model's parameters"
        return "request body must be a JSON object with the model's parameters (Content-Type: application/json)"
    name = loc[0]
    if kind == "missing":
        return f"{name}: required ({allowed_range_text(name)})"
    got = error.get("input")
    if isinstance(got, str):
        got = redact_urls_in(got)  # a URL's credentials are not repeated back, nor logged
    got_text = f"; got {got!r}" if not isinstance(got, (dict, list)) and len(repr(got)) < 80 else ""
    expected = allowed_range_text(name)
    # A validator's own reason (a control character, a refused address) says what is wrong exactly.
    reason = error.get("ctx", {}).get("error") if kind == "value_error" else None
    reason_text = f" ({redact_urls_in(str(reason))})" if reason else ""
    if expected:
        return f"{name}: must be {expected}{reason_text}{got_text}"
    return f"{name}: {error.get('msg', 'invalid')}"


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
