"""Text-to-video and keyframes through LTX2Generator.generate on the tiny models: real diffusers, real ffmpeg,
probed with PyAV. That the conditioning itself is Lightricks' is tests/parity/test_keyframes.py's job; here: the
request's images reach the video, the sizes are exact, a seed repeats, and bad keyframes are refused."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import pipelines
from pipelines.interface import TASK_T2V, InvalidInputError, Keyframe
from tests.support.media_probe import probe_mp4
from tests.support.pipeline_inputs import sha256, small_spec, write_noise_picture

# Not a multiple of 64 nor 8k+1 frames: the clip is generated larger and cut back.
WIDTH, HEIGHT, NUM_FRAMES = 200, 136, 14
MIDDLE = 7


@pytest.fixture(scope="module")
def generator():
    return pipelines.load_generator("tiny")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    return write_noise_picture(tmp_path_factory.mktemp("input") / "input.png")


@pytest.fixture(scope="module")
def keyframe_path(tmp_path_factory) -> Path:
    rows, cols = np.mgrid[0:160, 0:240]
    pixels = np.stack([rows, cols, 255 - rows], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("input") / "keyframe.png"
    Image.fromarray(pixels).save(path)
    return path


def spec(**overrides):
    values: dict = dict(width=WIDTH, height=HEIGHT, num_frames=NUM_FRAMES, fps=12)
    values.update(overrides)
    return small_spec("a lighthouse at dusk", **values)


def frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(int)


def assert_exact(path: Path, width: int = WIDTH, height: int = HEIGHT, num_frames: int = NUM_FRAMES) -> None:
    info = probe_mp4(path)
    assert (info["width"], info["height"], info["frame_count"]) == (width, height, num_frames)
    assert info["audio_codec"] == "aac"


def generate(generator, tmp_path: Path, name: str, params, image_path, keyframe_paths=()) -> Path:
    output = tmp_path / f"{name}.mp4"
    generator.generate(params, image_path, output, lambda *report: None, keyframe_paths)
    return output


def test_text_to_video_is_exact_repeatable_and_not_the_image_s_video(generator, image_path, tmp_path):
    t2v = spec(task=TASK_T2V)
    first = generate(generator, tmp_path, "t2v", t2v, None)
    again = generate(generator, tmp_path, "t2v-again", t2v, None)
    i2v = generate(generator, tmp_path, "i2v", spec(), image_path)
    assert_exact(first)
    assert sha256(first) == sha256(again)
    assert np.abs(frames(first) - frames(i2v)).mean() > 1.0


def test_a_keyframe_changes_the_video_and_repeats_with_its_seed(generator, image_path, keyframe_path, tmp_path):
    with_keyframe = spec(keyframes=(Keyframe(MIDDLE, 0.8),))
    first = generate(generator, tmp_path, "kf", with_keyframe, image_path, [keyframe_path])
    again = generate(generator, tmp_path, "kf-again", with_keyframe, image_path, [keyframe_path])
    plain = generate(generator, tmp_path, "plain", spec(), image_path)
    weaker = spec(keyframes=(Keyframe(MIDDLE, 0.3),))
    weak = generate(generator, tmp_path, "kf-weak", weaker, image_path, [keyframe_path])
    assert_exact(first)
    assert sha256(first) == sha256(again)
    assert np.abs(frames(first) - frames(plain)).mean() > 1.0
    assert np.abs(frames(first) - frames(weak)).mean() > 0.1  # the strength reaches the video too


def test_keyframes_without_an_image_at_the_last_frame(generator, keyframe_path, image_path, tmp_path):
    params = spec(task=TASK_T2V, keyframes=(Keyframe(MIDDLE, 1.0), Keyframe(NUM_FRAMES - 1, 0.9)))
    output = generate(generator, tmp_path, "kf-only", params, None, [keyframe_path, image_path])
    assert_exact(output)
    t2v = generate(generator, tmp_path, "t2v", spec(task=TASK_T2V), None)
    assert np.abs(frames(output) - frames(t2v)).mean() > 1.0


@pytest.mark.parametrize(
    "keyframes, paths, message",
    [
        ((Keyframe(NUM_FRAMES, 1.0),), 1, r"keyframes\[0\]\.frame: 14 is outside 0\.\.13"),
        ((Keyframe(-1, 1.0),), 1, r"keyframes\[0\]\.frame"),
        ((Keyframe(3, 1.5),), 1, r"keyframes\[0\]\.strength"),
        ((Keyframe(3, 1.0),), 0, r"keyframes: 1 keyframes but 0 keyframe images"),
    ],
)
def test_bad_keyframes_are_refused_naming_them(
    generator, image_path, keyframe_path, tmp_path, keyframes, paths, message
):
    with pytest.raises(InvalidInputError, match=message):
        generate(generator, tmp_path, "bad", spec(keyframes=keyframes), image_path, [keyframe_path] * paths)
    assert not list(tmp_path.iterdir())


def test_an_undecodable_keyframe_image_is_refused_naming_it(generator, image_path, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InvalidInputError, match=r"keyframes\[0\]\.image: cannot decode broken\.png"):
        generate(generator, tmp_path, "bad", spec(keyframes=(Keyframe(3, 1.0),)), image_path, [broken])


def test_ltx_2_3_makes_text_to_video_and_keyframe_videos(image_path, keyframe_path, tmp_path):
    tiny23 = pipelines.load_generator("tiny-2.3", recipe="two-stage", device="cpu")
    t2v = generate(tiny23, tmp_path, "t2v", spec(task=TASK_T2V), None)
    keyframed = generate(tiny23, tmp_path, "kf", spec(keyframes=(Keyframe(MIDDLE, 0.8),)), image_path, [keyframe_path])
    plain = generate(tiny23, tmp_path, "plain", spec(), image_path)
    for output in (t2v, keyframed):
        assert_exact(output)
    assert np.abs(frames(keyframed) - frames(plain)).mean() > 1.0


def test_ltx_2_5_makes_text_to_video_and_refuses_keyframes(image_path, keyframe_path, tmp_path):
    tiny25 = pipelines.load_generator("tiny-2.5", recipe="one-stage")
    params = spec(task=TASK_T2V, width=224, height=224, num_frames=17)
    assert_exact(generate(tiny25, tmp_path, "t2v", params, None), 224, 224, 17)
    with pytest.raises(InvalidInputError, match="keyframes: not offered by LTX-2.5"):
        generate(tiny25, tmp_path, "kf", spec(keyframes=(Keyframe(MIDDLE, 0.8),)), image_path, [keyframe_path])
