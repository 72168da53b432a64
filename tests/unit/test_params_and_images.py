"""Unit tests of parameter validation messages and image input decoding."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from server.api.params import I2VParams, T2VParams, describe_validation_error, job_spec
from server.errors import InvalidRequest
from server.jobs.images import check_image_bytes, classify_image_source
from tests.support.servers import make_png

OUT_OF_RANGE = [
    ("width", 255, "256 to 1280"),
    ("width", 1281, "256 to 1280"),
    ("height", 100, "256 to 1280"),
    ("num_frames", 0, "1 to 400"),
    ("num_frames", 401, "1 to 400"),
    ("fps", 31, "1 to 30"),
    ("fps", 0, "1 to 30"),
    ("guidance_scale", 0.5, "1 to 20"),
    ("guidance_scale", 21, "1 to 20"),
    ("seed", -2, "an integer: -1, or 0 to 4294967295"),
    ("width", "wide", "256 to 1280"),
    ("fps", True, "1 to 30"),
]


def messages_for(body: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        I2VParams.model_validate(body)
    return [describe_validation_error(error) for error in caught.value.errors()]


@pytest.mark.parametrize("field,value,range_text", OUT_OF_RANGE)
def test_out_of_range_message_names_field_and_range(field, value, range_text):
    (message,) = messages_for({"image": "x", "prompt": "p", field: value})
    assert message.startswith(f"{field}:") and range_text in message


def test_defaults_are_segmind_defaults():
    params = I2VParams(image="x", prompt="p")
    assert (params.width, params.height, params.num_frames, params.fps, params.seed, params.guidance_scale) == (
        720,
        1280,
        181,
        24,
        42,
        4.0,
    )
    assert params.negative_prompt.startswith("blurry, low quality")


def test_missing_required_fields_are_named():
    messages = messages_for({})
    assert any(m.startswith("image: required") for m in messages)
    assert any(m.startswith("prompt: required") for m in messages)


def test_data_uri_and_bare_base64_decode_to_the_same_bytes():
    png = make_png()
    encoded = base64.b64encode(png).decode()
    assert classify_image_source("data:image/png;base64," + encoded, 10**6).inline == png
    assert classify_image_source(encoded, 10**6).inline == png
    assert classify_image_source("https://example.com/a.png", 10**6).url == "https://example.com/a.png"


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://example.com/a.png", "scheme 'ftp'"),
        ("not base64 at all!!", "not an http(s) URL"),
        ("data:image/png,rawdata", "data URI"),
    ],
)
def test_unusable_image_references_are_refused(value, fragment):
    with pytest.raises(InvalidRequest) as caught:
        classify_image_source(value, 10**6)
    assert caught.value.message.startswith("image:") and fragment in caught.value.message


def test_oversized_inline_image_is_refused():
    with pytest.raises(InvalidRequest, match="byte limit"):
        classify_image_source(base64.b64encode(b"x" * 2000).decode(), 1000)


def test_image_bytes_are_checked_by_decoding():
    assert check_image_bytes(make_png(40, 30)) == (40, 30)
    with pytest.raises(InvalidRequest, match="cannot be decoded"):
        check_image_bytes(b"GIF89a-but-not-really")
    with pytest.raises(InvalidRequest, match="cannot be decoded"):
        check_image_bytes(make_png()[:60])


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"keyframes": [{"image": "y", "frame": 500}]}, "keyframes[0].frame: must be an integer from 1 to 399"),
        (
            {"num_frames": 9, "keyframes": [{"image": "y", "frame": 9}]},
            "keyframes[0].frame: must be an integer from 1 to 8 (below num_frames 9); got 9",
        ),
        (
            {"num_frames": 9, "keyframes": [{"image": "y", "frame": 3}, {"image": "z", "frame": 3}]},
            "keyframes[1].frame: frame 3 has a keyframe already",
        ),
        ({"num_frames": 1, "keyframes": [{"image": "y", "frame": 1}]}, "keyframes: a 1-frame video has no frame"),
        ({"keyframes": [{"image": "y", "frame": 3, "x": 1}]}, "keyframes[0].x: not a field here (allowed: image"),
        ({"keyframes": [{"frame": 3}]}, "keyframes[0].image: required (an http(s) URL, a data URI"),
        ({"keyframes": [{"image": "y", "frame": 2}] * 9}, "keyframes: must be a list of"),
        ({"loras": [{"name": "a"}, {"name": "a"}]}, "(each LoRA at most once; a is repeated)"),
        ({"loras": [{"name": "a", "scale": 5}]}, "loras[0].scale: must be a number from -2 to 2; got 5"),
        ({"loras": [{"name": "a", "scale": True}]}, "loras[0].scale: must be a number from -2 to 2 (a boolean"),
        ({"enhance_prompt": "yes"}, "enhance_prompt: must be true or false; got 'yes'"),
    ],
)
def test_the_new_fields_messages_name_the_nested_field_and_its_range(extra, message):
    (text,) = messages_for({"image": "x", "prompt": "p", **extra})
    assert message in text, text


def test_text_to_video_takes_no_image_and_the_spec_carries_the_new_fields():
    spec = job_spec(T2VParams(prompt="p", loras=[{"name": "a", "scale": 0.5}], enhance_prompt=True))
    assert (spec.task, spec.keyframes, spec.loras[0].scale, spec.enhance_prompt) == ("t2v", (), 0.5, True)
    assert spec.has_input_bundle  # text-to-video stores its (image-less) input bundle
    spec = job_spec(I2VParams(image="x", prompt="p", num_frames=9, keyframes=[{"image": "y", "frame": 4}]))
    assert (spec.task, spec.keyframes[0].frame, spec.keyframes[0].strength) == ("i2v", 4, 1.0)
