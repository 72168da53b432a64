"""Each LTX-2 generation behind the same Segmind contract: a real `ltx2-server serve --model tiny-2.3 / tiny-2.5`
answers the real segmind SDK with exact-size mp4s carrying the generation's audio, and /ready names it."""

from __future__ import annotations

import httpx
import pytest
from segmind import SegmindClient

from pipelines.generations import generation
from tests.support.media_probe import probe_mp4
from tests.support.servers import cli_server, png_data_uri

SLUG = "ltx-2-19b-i2v"


@pytest.mark.parametrize(
    ("model", "recipe", "size"),
    [("tiny-2.3", "two-stage", (320, 256)), ("tiny-2.5", "one-stage", (300, 260))],
)
def test_a_tiny_model_of_each_generation_serves_the_sdk_exact_mp4s(model, recipe, size, tmp_path):
    served = generation(model)
    with cli_server("--model", model, "--weights", str(tmp_path / "no-weights")) as (base_url, _):
        ready = httpx.get(f"{base_url}/ready", timeout=10).json()
        assert ready["generation"] == {"name": model, "title": served.title, "version": served.version}
        assert ready["test_model"] is True

        width, height = size
        client = SegmindClient(base_url=f"{base_url}/v1", timeout=300)
        job = client.submit_async(
            SLUG, image=png_data_uri(), prompt="a lighthouse at dusk", width=width, height=height,
            num_frames=17, fps=12, seed=5,
        )  # fmt: skip
        result = job.wait(timeout=300, interval=0.5)
        assert result["status"] == "COMPLETED", result
        path = tmp_path / f"{model}.mp4"
        path.write_bytes(httpx.get(result["output"], timeout=30).content)
        if model == "tiny-2.5":
            assert_ltx25_takes_text_to_video_only(base_url, client, tmp_path)

    info = probe_mp4(path)
    assert (info["width"], info["height"], info["frame_count"]) == (width, height, 17)
    assert info["fps"] == pytest.approx(12)
    assert info["audio_codec"] == "aac" and abs(info["audio_duration"] - 17 / 12) <= 1 / 12
    assert recipe in served.recipes and served.recipes[0] == recipe  # what `--recipe auto` ran


def test_a_generation_refuses_a_recipe_it_does_not_offer_at_start_up(tmp_path):
    import subprocess
    import sys

    from tests.support.servers import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--model", "tiny-2.5", "--recipe", "two-stage"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "recipe: tiny-2.5 offers one-stage; got 'two-stage'" in result.stderr


def assert_ltx25_takes_text_to_video_only(base_url: str, client: SegmindClient, tmp_path) -> None:
    """LTX-2.5 makes text-to-video; keyframes, LoRAs and prompt enhancement are a 400 naming the field, and its
    capabilities say so."""
    capabilities = httpx.get(f"{base_url}/ready", timeout=10).json()["capabilities"]
    assert capabilities["keyframes"]["max"] == 0 and capabilities["enhance_prompt"] is False
    assert capabilities["loras"]["max_per_request"] == 0
    result = client.submit_async("ltx-2-19b-t2v", prompt="rain on a window", width=256, height=256,
                                 num_frames=9, fps=8).wait(timeout=300, interval=0.5)  # fmt: skip
    assert result["status"] == "COMPLETED", result
    (tmp_path / "t2v.mp4").write_bytes(httpx.get(result["output"], timeout=30).content)
    info = probe_mp4(tmp_path / "t2v.mp4")
    assert (info["width"], info["height"], info["frame_count"]) == (256, 256, 9)
    body = {"image": png_data_uri(), "prompt": "p", "num_frames": 9}
    for extra in ({"keyframes": [{"image": png_data_uri(), "frame": 4}]}, {"enhance_prompt": True}):
        answer = httpx.post(f"{base_url}/v2/{SLUG}", json={**body, **extra}, timeout=30)
        assert answer.status_code == 400
        name, title = next(iter(extra)), generation("tiny-2.5").title
        assert answer.json()["error"] == f"{name}: not offered by {title}, which this server runs; send none"
