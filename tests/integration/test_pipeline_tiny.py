"""End-to-end tests of the tiny LTX-2 generator: real diffusers, real ffmpeg, probed with PyAV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pipelines
from pipelines.interface import InvalidInputError, JobSpec
from tests.support.media_probe import probe_mp4
from tests.support.pipeline_inputs import sha256, small_spec, write_noise_picture

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator():
    return pipelines.load_generator("tiny")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    return write_noise_picture(tmp_path_factory.mktemp("input") / "input.png")


def make_params(**overrides) -> JobSpec:
    return small_spec("a cat on a sofa", **overrides)


def test_load_generator_rejects_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        pipelines.load_generator("ltx-9000")


@pytest.mark.parametrize(
    "width,height,expected_pix_fmt",
    [(258, 300, "yuv420p"), (257, 300, "yuv444p")],  # odd sizes cannot be 4:2:0 in H.264
)
def test_output_has_exact_requested_size_frames_fps_and_audio(
    generator, image_path, tmp_path, width, height, expected_pix_fmt
):
    output = tmp_path / "out.mp4"
    params = make_params(width=width, height=height, num_frames=10, fps=8)
    result = generator.generate(params, image_path, output, lambda *a: None)

    assert result.output_path == output and result.seed == params.seed
    assert set(result.stage_seconds) == {
        "load_image",
        "encode_prompt",
        "stage1",
        "upsample",
        "stage2",
        "decode_audio",
        "decode_video",
        "mux",
    }
    info = probe_mp4(output)
    assert (info["width"], info["height"]) == (width, height)
    assert info["frame_count"] == 10
    assert info["fps"] == pytest.approx(8.0)
    assert info["video_codec"] == "h264"
    assert info["pix_fmt"] == expected_pix_fmt
    assert info["audio_codec"] == "aac"
    assert info["audio_sample_rate"] == 24000
    assert info["audio_duration"] == pytest.approx(10 / 8, abs=1 / 8)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp files left behind


def test_same_seed_same_bytes_different_seed_different_bytes(generator, image_path, tmp_path):
    outputs = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        outputs[name] = tmp_path / f"{name}.mp4"
        generator.generate(make_params(seed=seed), image_path, outputs[name], lambda *a: None)
    assert sha256(outputs["a"]) == sha256(outputs["b"])
    assert sha256(outputs["a"]) != sha256(outputs["c"])


def test_same_seed_same_bytes_across_processes(generator, image_path, tmp_path):
    in_process = tmp_path / "here.mp4"
    generator.generate(make_params(seed=3), image_path, in_process, lambda *a: None)
    other_process = tmp_path / "there.mp4"
    script = (
        "import sys, pipelines; from pathlib import Path; from pipelines.interface import JobSpec as P;"
        "g = pipelines.load_generator('tiny');"
        "g.generate(P(prompt='a cat on a sofa', negative_prompt='blurry', width=256, height=256, num_frames=9,"
        " fps=24, seed=3, guidance_scale=4.0), Path(sys.argv[1]), Path(sys.argv[2]), lambda *a: None)"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(image_path), str(other_process)], cwd=REPO_ROOT, check=True, timeout=120
    )
    assert sha256(in_process) == sha256(other_process)


def test_undecodable_image_raises_invalid_input(generator, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    output = tmp_path / "out.mp4"
    with pytest.raises(InvalidInputError, match="image: cannot decode"):
        generator.generate(make_params(), bad, output, lambda *a: None)
    assert not output.exists()


def test_truncated_image_raises_invalid_input(generator, image_path, tmp_path):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(image_path.read_bytes()[:400])
    with pytest.raises(InvalidInputError):
        generator.generate(make_params(), truncated, tmp_path / "out.mp4", lambda *a: None)


def test_progress_arrives_in_stage_order(generator, image_path, tmp_path):
    events = []
    generator.generate(make_params(), image_path, tmp_path / "out.mp4", lambda *e: events.append(e))
    stages = [stage for stage, _, _ in events]
    order = ["encoding_prompt", "denoising", "decoding_audio", "decoding_video", "muxing"]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    denoising = [(step, total) for stage, step, total in events if stage == "denoising"]
    # two-stage: 2 steps at half size, then the 3 distilled steps at full size
    assert denoising == [(step, 5) for step in range(6)]
    for stage in order:
        steps = [step for s, step, _ in events if s == stage]
        assert steps == sorted(steps)
    assert events[-1] == ("muxing", 1, 1)
    # The video decode reports frames decoded out of the output's frame count, ending at all of them.
    video = [(step, total) for stage, step, total in events if stage == "decoding_video"]
    assert video[0][0] == 0 and video[-1][0] == video[-1][1] == make_params().num_frames


def test_exception_from_progress_propagates_and_leaves_no_output(generator, image_path, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_on_first_step(stage, step, total):
        if stage == "denoising" and step == 1:
            raise Cancelled()

    output = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        generator.generate(make_params(), image_path, output, cancel_on_first_step)
    assert list(tmp_path.iterdir()) == []


def test_num_threads_caps_torch_threads_of_a_worker_sharing_the_cpu():
    # In a process of its own: torch's thread count is process-wide and the other tests want them all.
    script = "import pipelines, torch; pipelines.load_generator('tiny', num_threads=1); print(torch.get_num_threads())"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=120, capture_output=True, text=True
    )
    assert result.stdout.strip().splitlines()[-1] == "1"
