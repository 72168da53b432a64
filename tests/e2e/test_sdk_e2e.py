"""End to end: ``ltx2-server serve --model tiny`` as a real process, driven by the official segmind SDK.

The tiny LTX-2 runs the real diffusers pipeline on the CPU; every video is probed stream by stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import segmind
from segmind import InferenceFailed, SegmindClient
from segmind.exceptions import SegmindError

from tests.support.api import SCRIPTED_MODEL
from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, cli_server, image_host, make_png, png_data_uri

SLUG = "ltx-2-19b-i2v"
HOSTED_PAGE_PROMPT = (
    "A bright sunny afternoon in a backyard with an old stone wall and green bushes in the background, "
    "full-body shot of a young woman in a blue denim jacket, she smiles and raises one hand"
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_server():
    with cli_server("--model", "tiny") as (base_url, process):
        yield base_url


@pytest.fixture(scope="module")
def picture_host():
    with image_host({"/portrait.png": (200, "image/png", make_png(360, 640))}) as host:
        yield host


def assert_video_matches(path, width, height, num_frames, fps):
    info = probe_mp4(path)
    assert (info["width"], info["height"]) == (width, height)
    assert info["frame_count"] == num_frames
    assert info["fps"] == pytest.approx(fps)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["audio_codec"] == "aac"
    assert abs(info["audio_duration"] - num_frames / fps) <= 1 / fps
    return info


def test_hosted_page_example_with_the_default_payload(tiny_server, picture_host, tmp_path):
    """The example from Segmind's page, unchanged but for base_url (and a loopback image)."""
    client = SegmindClient(base_url=f"{tiny_server}/v1")
    payload = {
        "prompt": HOSTED_PAGE_PROMPT,
        "negative_prompt": (
            "blurry, low quality, still frame, frames, watermark, overlay, titles, has blurbox, has subtitles"
        ),
        "image": f"{picture_host}/portrait.png",
        "width": 720,
        "height": 1280,
        "num_frames": 181,
        "fps": 24,
        "seed": 42,
        "guidance_scale": 4,
    }
    job = client.submit_async(SLUG, **payload)
    assert job.request_id
    result = job.wait(timeout=900, interval=2.0)
    assert result["status"] == "COMPLETED"
    assert result["output"].startswith("http://127.0.0.1:")
    video = httpx.get(result["output"], timeout=60)
    assert video.status_code == 200
    path = tmp_path / "default.mp4"
    path.write_bytes(video.content)
    assert_video_matches(path, 720, 1280, 181, 24)


def test_run_sync_returns_mp4_bytes_at_an_odd_size(tiny_server, tmp_path):
    client = SegmindClient(base_url=f"{tiny_server}/v1", timeout=300)
    response = client.run_sync(
        SLUG, image=png_data_uri(), prompt="waves on a beach", width=300, height=260, num_frames=10, fps=12, seed=3
    )
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["x-seed-value"] == "3"
    path = tmp_path / "sync.mp4"
    path.write_bytes(response.content)
    assert_video_matches(path, 300, 260, 10, 12)


def test_same_request_same_bytes_and_another_seed_differs(tiny_server):
    client = SegmindClient(base_url=f"{tiny_server}/v1", timeout=300)
    request = dict(image=png_data_uri(), prompt="a red kite", width=256, height=256, num_frames=9, fps=8)
    first = client.run_sync(SLUG, seed=11, **request).content
    second = client.run_sync(SLUG, seed=11, **request).content
    other = client.run_sync(SLUG, seed=12, **request).content
    assert first == second
    assert first != other


def test_module_level_run_through_the_default_client(tiny_server, monkeypatch, tmp_path):
    monkeypatch.setattr(segmind, "_default_client", SegmindClient(base_url=f"{tiny_server}/v1"))
    result = segmind.run(SLUG, image=png_data_uri(), prompt="a fox", width=256, height=288, num_frames=17, fps=16)
    assert result["status"] == "COMPLETED"
    path = tmp_path / "run.mp4"
    path.write_bytes(httpx.get(result["output"]).content)
    assert_video_matches(path, 256, 288, 17, 16)


def test_sdk_sees_validation_errors_and_failures_with_details(tiny_server):
    client = SegmindClient(base_url=f"{tiny_server}/v1")
    with pytest.raises(SegmindError) as caught:
        client.submit_async(SLUG, image=png_data_uri(), prompt="x", num_frames=1000)
    assert caught.value.status == 400 and "num_frames" in caught.value.detail and "1 to 400" in caught.value.detail

    job = client.submit_async(SLUG, image="http://127.0.0.1:9/nothing-listens-here.png", prompt="x")
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=60, interval=0.2)
    assert failed.value.detail.startswith("image: cannot fetch")


def test_killed_worker_fails_the_running_job_and_the_next_one_completes(tiny_server):
    slow = httpx.post(
        f"{tiny_server}/v2/{SLUG}",
        json={"image": png_data_uri(), "prompt": "slow", "width": 1024, "height": 1024, "num_frames": 121},
    ).json()
    deadline = time.monotonic() + 60
    while httpx.get(slow["status_url"]).json()["status"] != "PROCESSING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(httpx.get(f"{tiny_server}/ready").json()["worker_pid"], signal.SIGKILL)

    client = SegmindClient(base_url=f"{tiny_server}/v1")
    with pytest.raises(InferenceFailed) as failed:
        # Re-poll a known job the SDK's way: a handle built from the submit answer's URLs.
        segmind.v2.AsyncJob(slow["request_id"], slow["status_url"], slow["response_url"], slow, client).wait(
            timeout=60, interval=0.2
        )
    assert "worker process died" in failed.value.detail

    after = client.submit_async(SLUG, image=png_data_uri(), prompt="after", width=256, height=256, num_frames=9)
    assert after.wait(timeout=180, interval=0.5)["status"] == "COMPLETED"


def test_wrong_key_is_401_through_the_sdk():
    with cli_server("--model", SCRIPTED_MODEL, env={"LTX2_API_KEYS": "secret-one,secret-two"}) as (base_url, _):
        with pytest.raises(SegmindError) as caught:
            SegmindClient(api_key="wrong", base_url=f"{base_url}/v1").submit_async(
                SLUG, image=png_data_uri(), prompt="x"
            )
        assert caught.value.status == 401
        job = SegmindClient(api_key="secret-two", base_url=f"{base_url}/v1").submit_async(
            SLUG, image=png_data_uri(), prompt="x", width=256, height=256, num_frames=9, fps=8
        )
        assert job.wait(timeout=60, interval=0.2)["status"] == "COMPLETED"


def test_the_api_process_never_imports_torch():
    code = (
        "import sys\n"
        "from server.api.app import create_app\n"
        "from server.cli.main import build_parser\n"
        "from server.settings import Settings\n"
        "create_app(Settings())\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'pipelines')\n"
        # Of pipelines, only the torch-free modules: the JobSpec both sides share, and the generations table
        # (with the weights-folder checks it runs) that validates --model before any worker starts.
        "contract = ('pipelines', 'pipelines.interface', 'pipelines.generations', 'pipelines.guidance',"
        " 'pipelines.ltx25_layout', 'pipelines.weights', 'pipelines.inputs', 'pipelines.lora_files',"
        " 'pipelines.moderation')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy and m not in contract)\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cancelling_a_tiny_model_job_stops_it_without_killing_the_worker(tiny_server):
    client = SegmindClient(base_url=f"{tiny_server}/v1")
    restarts = httpx.get(f"{tiny_server}/ready").json()["worker_restarts"]
    job = client.submit_async(SLUG, image=png_data_uri(), prompt="to be cancelled", width=720, height=1280)
    status_url = f"{tiny_server}/v2/requests/{job.request_id}/status"
    deadline = time.monotonic() + 60
    while httpx.get(status_url).json()["status"] != "PROCESSING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # into the denoising loop: the diffusers step callback raises there
    cancelled = httpx.delete(f"{tiny_server}/v2/requests/{job.request_id}", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["error"] == "cancelled"
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=30, interval=0.2)
    assert failed.value.detail == "cancelled"
    assert httpx.get(f"{tiny_server}/v2/requests/{job.request_id}").json()["output"] is None
    assert httpx.get(f"{tiny_server}/ready").json()["worker_restarts"] == restarts
    after = client.submit_async(SLUG, image=png_data_uri(), prompt="after", width=256, height=256, num_frames=9)
    assert after.wait(timeout=180, interval=0.5)["status"] == "COMPLETED"
