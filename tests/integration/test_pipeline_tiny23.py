"""End to end on the tiny LTX-2.3 model (``--model tiny-2.3``): every recipe through the same generator as
LTX-2.0, real diffusers and ffmpeg, probed with PyAV. Its numbers against Lightricks' reference are the parity
suite's (tests/parity/test_ltx23.py); here: exact sizes, 48 kHz audio, the generation's defaults, the fp8
option, the offload plan and the progress stages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import pipelines
from pipelines.interface import JobSpec
from tests.support.media_probe import probe_mp4


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "input.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (180, 320, 3), dtype=np.uint8)).save(path)
    return path


def _spec(**overrides) -> JobSpec:
    values = dict(prompt="a cat", negative_prompt="blurry", width=200, height=120, num_frames=14, fps=12, seed=5,
                  guidance_scale=4.0)  # fmt: skip
    return JobSpec(**{**values, **overrides})


@pytest.mark.parametrize("recipe", ["two-stage", "one-stage", "distilled"])
def test_every_recipe_returns_the_exact_size_with_48_khz_audio(image_path, tmp_path, recipe):
    generator = pipelines.load_generator("tiny-2.3", recipe=recipe, device="cpu")
    stages: list[str] = []
    output = tmp_path / "out.mp4"
    generator.generate(_spec(), image_path, output, lambda stage, step, total: stages.append(stage))
    info = probe_mp4(output)
    assert (info["width"], info["height"], info["frame_count"]) == (200, 120, 14)
    assert info["fps"] == pytest.approx(12.0)
    assert (info["audio_codec"], info["audio_sample_rate"], info["audio_channels"]) == ("aac", 48000, 2)
    assert info["audio_duration"] == pytest.approx(14 / 12, abs=1 / 12)
    assert list(dict.fromkeys(stages)) == ["encoding_prompt", "denoising", "decoding_audio", "decoding_video", "muxing"]


def test_the_generation_s_defaults_apply(image_path):
    generator = pipelines.load_generator("tiny-2.3", device="cpu")
    assert generator.spec.stage1_steps == 2  # the tiny row's steps
    assert generator.policy.video.stg_blocks == (28,) and generator.policy.audio.cfg == 7.0  # LTX_2_3_PARAMS
    assert generator.x264_preset == "ultrafast" and generator.max_sequence_length == 128
    assert "model tiny-2.3" in generator.description and "offload none" in generator.description
    assert type(generator.pipe.vocoder).__name__ == "LTX2VocoderWithBWE"
    assert generator.pipe.transformer.config.gated_attn and generator.pipe.connectors.config.per_modality_projections
    with pytest.raises(ValueError, match="offers ltx-pipelines"):
        pipelines.load_generator("tiny-2.3", guidance="ltx-2.0-release")


def test_same_seed_same_video_and_the_fp8_option(image_path, tmp_path):
    """A seed gives the same file twice; fp8 storage of the transformer blocks runs and changes the output."""
    plain = pipelines.load_generator("tiny-2.3", device="cpu", recipe="one-stage")
    fp8 = pipelines.load_generator("tiny-2.3", device="cpu", recipe="one-stage", fp8=True)
    assert "stored in fp8" in fp8.description
    outputs = [tmp_path / f"{name}.mp4" for name in ("a", "b", "fp8")]
    for generator, output in zip((plain, plain, fp8), outputs, strict=True):
        generator.generate(_spec(), image_path, output, lambda *args: None)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert outputs[0].read_bytes() != outputs[2].read_bytes()
    assert probe_mp4(outputs[2])["frame_count"] == 14
