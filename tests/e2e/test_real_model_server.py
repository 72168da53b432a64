"""``ltx2-server serve --model ltx-2-19b --weights DIR`` end to end on the CPU, with the tiny LTX-2 saved
in the real weights layout: every recipe through HTTP and the segmind SDK, the start-up report of the
offload choice, the start-up refusal of incomplete weights, and a CUDA out-of-memory in one job."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from segmind import InferenceFailed, SegmindClient

from pipelines.tiny import save_tiny_weights
from tests.support.media_probe import probe_mp4
from tests.support.servers import REPO_ROOT, cli_server, png_data_uri

pytestmark = pytest.mark.e2e
SLUG = "ltx-2-19b-i2v"
FAST_ARGS = ("--steps", "2", "--x264-preset", "ultrafast", "--x264-crf", "36", "--device", "cpu")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    save_tiny_weights(directory)
    return directory


@pytest.mark.parametrize(
    "recipe, guidance",
    [("two-stage", "ltx-pipelines"), ("one-stage", "ltx-2.0-release"), ("distilled", "ltx-pipelines")],
)
def test_every_recipe_serves_through_the_sdk(tiny_weights, tmp_path, recipe, guidance):
    args = ("--model", "ltx-2-19b", "--weights", str(tiny_weights), "--recipe", recipe, "--guidance", guidance)
    with cli_server(*args, *FAST_ARGS) as (base_url, _process):
        ready = httpx.get(f"{base_url}/ready").json()
        assert f"recipe {recipe}" in ready["model"] and "offload none" in ready["model"]
        assert ready["guidance"] == guidance
        expected = "guidance none (the distilled recipe is unguided)" if recipe == "distilled" else f"guidance {guidance}:"
        assert expected in ready["model"]
        client = SegmindClient(base_url=f"{base_url}/v1")
        payload = dict(image=png_data_uri(120, 90), prompt="waves on a beach", width=320, height=256, num_frames=17)
        result = client.submit_async(SLUG, **payload, fps=24, seed=3).wait(timeout=120, interval=0.5)
        assert result["status"] == "COMPLETED"
        video = tmp_path / "out.mp4"
        video.write_bytes(httpx.get(result["output"]).content)
        info = probe_mp4(video)
        assert (info["width"], info["height"], info["frame_count"]) == (320, 256, 17)
        assert info["audio_codec"] == "aac" and abs(info["audio_duration"] - 17 / 24) <= 1 / 24


def test_serve_refuses_to_start_without_complete_weights(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    completed = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--model", "ltx-2-19b", "--weights", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "weights are incomplete" in completed.stderr
    assert "download_weights.py" in completed.stderr


def test_gpu_out_of_memory_fails_that_job_clearly_and_the_worker_serves_the_next():
    with cli_server("--model", "tests.support.fixture_generators:tiny_that_runs_out_of_gpu_memory") as (base_url, _):
        client = SegmindClient(base_url=f"{base_url}/v1")
        payload = dict(image=png_data_uri(), width=256, height=256, num_frames=9)
        restarts = httpx.get(f"{base_url}/ready").json()["worker_restarts"]
        with pytest.raises(InferenceFailed) as failure:
            client.submit_async(SLUG, prompt="oom please", **payload).wait(timeout=60, interval=0.3)
        assert "GPU ran out of memory" in failure.value.detail and "--offload" in failure.value.detail
        result = client.submit_async(SLUG, prompt="fine", **payload).wait(timeout=60, interval=0.3)
        assert result["status"] == "COMPLETED"
        assert httpx.get(f"{base_url}/ready").json()["worker_restarts"] == restarts  # same worker


def test_the_start_up_weights_check_keeps_torch_out_of_the_api_process(tiny_weights):
    code = (
        "import sys\n"
        "from server.settings import Settings\n"
        "from server.workers.child import weights_problems, worker_config_from\n"
        f"config = worker_config_from(Settings(model='auto', weights={str(tiny_weights)!r}))\n"
        "print(config.model, weights_problems(config))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["ltx-2-19b []", "[]"]
