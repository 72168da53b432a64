"""Text-to-video, keyframes, LoRAs and prompt enhancement end to end: a real `ltx2-server serve` running the tiny
model (built in code, and written to disk in the 19B's weights layout and loaded from there), a LoRA folder, and
the real segmind SDK on /v1 (run_sync) and /v2 (submit_async + wait); the mp4s are probed for their exact streams.
The CLI's `generate` does the same without a server."""

from __future__ import annotations

import base64
import subprocess
import sys

import httpx
import pytest
from segmind import SegmindClient

from pipelines.tiny import save_tiny_weights
from tests.support.lora_files import write_tiny_lora_file
from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, cli_server, make_png, png_data_uri

I2V, T2V = "ltx-2-19b-i2v", "ltx-2-19b-t2v"
SMALL = dict(width=256, height=288, num_frames=17, fps=16)
FAST = ("--steps", "2", "--x264-preset", "ultrafast")


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    write_tiny_lora_file(folder / "camera-push.safetensors", seed=3)
    write_tiny_lora_file(folder / "film-look.safetensors", seed=4, rank=2)
    return folder


@pytest.fixture(scope="module")
def server(lora_folder):
    """The tiny model built in code."""
    with cli_server("--model", "tiny", "--loras", str(lora_folder), *FAST) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory, lora_folder):
    """The tiny model written to disk in LTX-2 19B's weights layout and loaded from there as the 19B is."""
    weights = tmp_path_factory.mktemp("weights")
    save_tiny_weights(weights)
    with cli_server("--model", "ltx-2-19b", "--weights", str(weights), "--loras", str(lora_folder), *FAST) as (url, _):
        yield url


@pytest.fixture(params=["server", "disk_server"])
def each_server(request):
    return request.getfixturevalue(request.param)


def keyframe_uri(width: int = 96, height: int = 64) -> str:
    return "data:image/png;base64," + base64.b64encode(make_png(width, height)).decode()


def assert_exact_mp4(path, width, height, num_frames, fps):
    info = probe_mp4(path)
    assert (info["width"], info["height"], info["frame_count"]) == (width, height, num_frames)
    assert info["fps"] == pytest.approx(fps)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["audio_codec"] == "aac" and abs(info["audio_duration"] - num_frames / fps) <= 1 / fps


def test_capabilities_and_the_lora_list(each_server):
    server = each_server
    ready = httpx.get(f"{server}/ready", timeout=10).json()
    capabilities = ready["capabilities"]
    assert capabilities["models"] == [{"slug": I2V, "task": "i2v"}, {"slug": T2V, "task": "t2v"}]
    assert capabilities["keyframes"]["max"] == 8
    assert capabilities["enhance_prompt"] is True
    listed = httpx.get(f"{server}/v1/loras", timeout=10).json()
    assert [lora["name"] for lora in listed["loras"]] == ["camera-push", "film-look"]
    assert [lora["rank"] for lora in listed["loras"]] == [4, 2]
    assert capabilities["loras"] == listed


def test_text_to_video_through_v1_and_v2(server, tmp_path):
    client = SegmindClient(base_url=f"{server}/v1", timeout=300)
    response = client.run_sync(T2V, prompt="a paper boat on a pond", seed=5, **SMALL)
    assert response.headers["content-type"] == "video/mp4"
    (tmp_path / "v1.mp4").write_bytes(response.content)
    assert_exact_mp4(tmp_path / "v1.mp4", 256, 288, 17, 16)

    result = client.submit_async(T2V, prompt="a paper boat on a pond", seed=5, **SMALL).wait(timeout=300, interval=0.3)
    assert result["status"] == "COMPLETED", result
    video = httpx.get(result["output"], timeout=60).content
    assert video == response.content  # the same request makes the same video on either route


def test_keyframes_loras_and_prompt_enhancement_together(each_server, tmp_path):
    server = each_server
    client = SegmindClient(base_url=f"{server}/v1", timeout=300)
    request = dict(image=png_data_uri(), prompt="a lighthouse at dusk", seed=9, **SMALL)
    plain = client.run_sync(I2V, **request).content
    keyframes = [{"image": keyframe_uri(), "frame": 8, "strength": 0.8}, {"image": keyframe_uri(64, 96), "frame": 16}]
    with_keyframes = client.run_sync(I2V, keyframes=keyframes, **request)
    (tmp_path / "keyframes.mp4").write_bytes(with_keyframes.content)
    assert_exact_mp4(tmp_path / "keyframes.mp4", 256, 288, 17, 16)
    assert with_keyframes.content != plain

    loras = [{"name": "camera-push", "scale": 0.9}, {"name": "film-look", "scale": -0.5}]
    job = client.submit_async(I2V, keyframes=keyframes[:1], loras=loras, enhance_prompt=True, **request)
    result = job.wait(timeout=300, interval=0.3)
    assert result["status"] == "COMPLETED", result
    assert isinstance(result["enhanced_prompt"], str) and result["enhanced_prompt"].strip()
    assert result["prompt"] == "a lighthouse at dusk"
    (tmp_path / "all.mp4").write_bytes(httpx.get(result["output"], timeout=60).content)
    assert_exact_mp4(tmp_path / "all.mp4", 256, 288, 17, 16)

    # A LoRA request leaves the model as it was: the plain request again gives the same bytes.
    assert client.run_sync(I2V, **request).content == plain


@pytest.mark.parametrize(
    ("slug", "extra", "message"),
    [
        (I2V, {"keyframes": [{"image": "x", "frame": 17}]}, "keyframes[0].frame: must be an integer from 1 to 16"),
        (I2V, {"keyframes": [{"image": "data:image/png;base64,AAAA", "frame": 3}]}, "keyframes[0].image: "),
        (I2V, {"keyframes": [{"image": "x", "frame": 3, "at": 1}]}, "keyframes[0].at: not a field here"),
        (I2V, {"loras": [{"name": "nope"}]}, "loras[0].name: must be one of the server's LoRAs (camera-push, film"),
        (T2V, {"loras": [{"name": "film-look", "scale": 3}]}, "loras[0].scale: must be a number from -2 to 2"),
        (T2V, {"enhance_prompt": "yes"}, "enhance_prompt: must be true or false"),
        (T2V, {"prompt": ""}, "prompt: must be a string of 1 to 10000 characters"),
    ],
)
def test_bad_new_parameters_get_a_400_naming_them(server, slug, extra, message):
    body = {**({"image": png_data_uri()} if slug == I2V else {}), "prompt": "p", **SMALL, **extra}
    for route in ("v1", "v2"):
        answer = httpx.post(f"{server}/{route}/{slug}", json=body, timeout=30)
        assert answer.status_code == 400, answer.text
        assert message in answer.json()["error"]


def test_the_cli_makes_text_to_video_and_keyframe_videos(tmp_path, lora_folder):
    picture = tmp_path / "key.png"
    picture.write_bytes(make_png(80, 120))

    def generate(*args: str):
        command = [sys.executable, "-m", "server.cli", "generate", "--model", "tiny", "--loras", str(lora_folder)]
        env = {"PYTHONPATH": str(REPO_ROOT), "LTX2_STEPS": "2", "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [*command, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env
        )

    size = ("--width", "256", "--height", "256", "--num-frames", "9", "--fps", "8")
    t2v = generate("--prompt", "a kite", *size, "--out", str(tmp_path / "t2v.mp4"))
    assert t2v.returncode == 0, t2v.stderr
    assert_exact_mp4(tmp_path / "t2v.mp4", 256, 256, 9, 8)

    keyed = generate(
        "--image", str(picture), "--keyframe", f"{picture}@4:0.7", "--lora", "camera-push:0.5", "--enhance-prompt",
        "--prompt", "a kite", *size, "--out", str(tmp_path / "keyed.mp4"),
    )  # fmt: skip
    assert keyed.returncode == 0, keyed.stderr
    assert "enhanced prompt: " in keyed.stderr
    assert_exact_mp4(tmp_path / "keyed.mp4", 256, 256, 9, 8)

    refused = generate("--prompt", "a kite", "--lora", "unknown", "--out", str(tmp_path / "no.mp4"))
    assert refused.returncode == 2
    assert "loras[0].name: must be one of the server's LoRAs" in refused.stderr
