"""The speed and memory options reach the worker through the real CLI: a tiny-model server started with them
answers the segmind SDK with an exact mp4, and a value the pipelines do not know is a start-up error."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from segmind import SegmindClient

from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, cli_server, png_data_uri

FLAGS = (
    "--fp8", "storage", "--stage2-lora", "merged", "--attention", "sdpa",
    "--decode-chunk-frames", "0", "--no-negative-prompt-cache", "--plan-size", "1280x720x121",
)  # fmt: skip


def test_a_server_started_with_the_speed_and_memory_options_serves_exact_mp4s(tmp_path):
    with cli_server("--model", "tiny", "--recipe", "two-stage", *FLAGS) as (base_url, _):
        description = httpx.get(f"{base_url}/ready", timeout=10).json()
        assert description["ready"] is True
        loaded = description["model"]  # what the worker says it loaded
        assert "stage-2 LoRA merged at load" in loaded and "transformer stored in fp8" in loaded
        assert "video decode in one pass" in loaded and "negative prompt cached" not in loaded
        client = SegmindClient(base_url=f"{base_url}/v1", timeout=300)
        video = client.run_sync(
            "ltx-2-19b-i2v", image=png_data_uri(), prompt="rain on a window", width=320, height=256,
            num_frames=17, fps=12, seed=9,
        )  # fmt: skip
    path = tmp_path / "options.mp4"
    path.write_bytes(video.content)
    info = probe_mp4(path)
    assert (info["width"], info["height"], info["frame_count"]) == (320, 256, 17)
    assert info["audio_codec"] == "aac"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--fp8", "int4", "fp8: must be one of off, storage, compute; got 'int4'"),
        ("--attention", "xformers", "attention: must be one of auto, sdpa, cudnn, flash4, sage; got 'xformers'"),
        ("--compile", "max", "compile: must be one of off, regional; got 'max'"),
        ("--decode-chunk-frames", "-1", "decode-chunk-frames: must be 0 or more; got -1"),
        ("--plan-size", "720x1280", "plan-size: must be WIDTHxHEIGHTxFRAMES like 720x1280x181; got '720x1280'"),
    ],
)
def test_an_unknown_option_value_is_a_start_up_error_naming_the_choices(flag, value, message):
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--model", "tiny", flag, value],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and message in result.stderr


def test_fp8_alone_still_means_float8_storage_as_when_it_was_a_switch():
    from server.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "--fp8"]).fp8 == "storage"
    assert parser.parse_args(["worker", "--fp8", "compute"]).fp8 == "compute"
    assert (
        parser.parse_args(["generate", "--image", "a.png", "--prompt", "p", "--out", "o.mp4", "--fp8"]).fp8 == "storage"
    )


def test_the_mux_overlap_stays_off_unless_asked_for_until_measured_on_a_gpu():
    from server.settings import Settings
    from server.workers.child import overlaps_mux, worker_config_from

    assert Settings().overlap_mux == "auto" and not overlaps_mux(worker_config_from(Settings()).overlap_mux)
    assert overlaps_mux("on") and not overlaps_mux("off")
