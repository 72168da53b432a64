"""The content policy end to end (--moderation): real servers and worker hosts as processes, the official SDK.

A refused prompt or output is FAILED with "content blocked: ..." on /v2 (422 on status and result, the SDK's
InferenceFailed) and a 422 with that error on the blocking /v1 call; /metrics counts it; a refused output's
video is deleted; a checker that raises fails its job and the worker goes on."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from segmind import InferenceFailed, SegmindClient
from segmind.exceptions import SegmindError

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, wait_for
from tests.support.content_checkers import MARKED_SIZE
from tests.support.media_probe import probe_mp4
from tests.support.redis_server import require_redis_server
from tests.support.scale_out import Cluster
from tests.support.servers import REPO_ROOT, cli_server, png_data_uri, thread_server

pytestmark = pytest.mark.e2e

SLUG = "ltx-2-19b-i2v"
SMALL = {"width": 256, "height": 256, "num_frames": 9, "fps": 8}
PROMPT_BLOCKED = "content blocked: prompt: contains a blocked term"
WORDS = "# the operator's own terms\nzebra stripes\n"


@pytest.fixture(scope="module")
def word_list(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "words.txt"
    path.write_text(WORDS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def wordlist_server(word_list):
    with cli_server("--model", SCRIPTED_MODEL, "--moderation", f"wordlist:{word_list}") as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def output_checked(tmp_path_factory):
    """A server whose checker refuses bright output frames (every frame of the scripted generator's videos)."""
    results = tmp_path_factory.mktemp("results")
    checker = "tests.support.content_checkers:refuse_output"
    with cli_server("--model", SCRIPTED_MODEL, "--moderation", checker, "--results-dir", str(results)) as (url, _):
        yield url, results


def blocked_counts(base_url: str) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(f"{base_url}/metrics").text)
    family = next(family for family in families if family.name == "ltx2_content_blocked")
    return {sample.labels["where"]: sample.value for sample in family.samples if sample.name.endswith("_total")}


def test_a_refused_prompt_is_a_422_on_v1_and_failed_on_v2(wordlist_server):
    client = SegmindClient(base_url=f"{wordlist_server}/v1")
    before = blocked_counts(wordlist_server)

    with pytest.raises(SegmindError) as refused:
        client.run_sync(SLUG, image=png_data_uri(), prompt="ZEBRA  stripes at dawn", **SMALL)
    assert refused.value.status == 422 and refused.value.detail == PROMPT_BLOCKED

    # Fullwidth letters and the built-in list, through the queue.
    job = client.submit_async(SLUG, image=png_data_uri(), prompt="ｚｅｂｒａ-stripes", **SMALL)
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=120, interval=0.2)
    assert failed.value.detail == PROMPT_BLOCKED
    status = httpx.get(f"{wordlist_server}/v2/requests/{job.request_id}/status")
    assert status.status_code == 422 and status.json()["status"] == "FAILED"
    assert status.json()["error"] == PROMPT_BLOCKED
    result = httpx.get(f"{wordlist_server}/v2/requests/{job.request_id}")
    assert result.status_code == 422 and result.json()["error"] == PROMPT_BLOCKED

    with pytest.raises(SegmindError) as builtin:
        client.run_sync(SLUG, image=png_data_uri(), prompt="CSAM", **SMALL)
    assert builtin.value.status == 422 and builtin.value.detail == PROMPT_BLOCKED

    after = blocked_counts(wordlist_server)
    assert after["prompt"] == before["prompt"] + 3
    assert after["input"] == before["input"] and after["output"] == before["output"] == 0


def test_an_allowed_prompt_completes(wordlist_server, tmp_path):
    client = SegmindClient(base_url=f"{wordlist_server}/v1")
    # "zebra" alone and "class" hold no listed term as a whole word or phrase.
    result = client.submit_async(SLUG, image=png_data_uri(), prompt="a zebra in class", **SMALL).wait(timeout=120)
    assert result["status"] == "COMPLETED"
    path = tmp_path / "allowed.mp4"
    path.write_bytes(httpx.get(result["output"], timeout=60).content)
    assert probe_mp4(path)["frame_count"] == SMALL["num_frames"]
    video = client.run_sync(SLUG, image=png_data_uri(), prompt="a zebra in class", **SMALL)
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"


def test_a_refused_output_is_deleted_and_the_job_failed(output_checked):
    base_url, results = output_checked
    client = SegmindClient(base_url=f"{base_url}/v1")
    job = client.submit_async(SLUG, image=png_data_uri(), prompt="a bright test card", **SMALL)
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=120, interval=0.2)
    assert failed.value.detail.startswith("content blocked: output video: too bright (")
    assert not list(results.rglob("*.mp4")), "the refused video must not stay on disk"
    assert httpx.get(f"{base_url}/v2/requests/{job.request_id}").status_code == 422

    with pytest.raises(SegmindError) as refused:
        client.run_sync(SLUG, image=png_data_uri(), prompt="a bright test card", **SMALL)
    assert refused.value.status == 422 and refused.value.detail.startswith("content blocked: output video: ")
    assert blocked_counts(base_url)["output"] == 2


def test_a_checker_that_raises_fails_its_job_and_the_worker_goes_on(output_checked):
    base_url, _ = output_checked
    client = SegmindClient(base_url=f"{base_url}/v1")
    with pytest.raises(SegmindError) as broken:
        client.run_sync(SLUG, image=png_data_uri(), prompt="explode", **SMALL)
    assert broken.value.status == 500
    assert broken.value.detail == (
        "the content checker failed on the prompt (RuntimeError: the checker broke on purpose)"
    )
    job = client.submit_async(SLUG, image=png_data_uri(), prompt="the next one", **SMALL)
    with pytest.raises(InferenceFailed, match="content blocked: output video"):
        job.wait(timeout=120, interval=0.2)  # ran and was checked: the same worker took it
    assert httpx.get(f"{base_url}/ready").json()["worker_restarts"] == 0


def test_a_bad_moderation_value_stops_the_server_at_start_up(tmp_path):
    for value, expected in (
        ("words", "moderation: must be wordlist, wordlist:FILE or module:factory; got 'words'"),
        (f"wordlist:{tmp_path / 'gone.txt'}", f"moderation: the word list '{tmp_path / 'gone.txt'}' cannot be read"),
    ):
        command = [sys.executable, "-m", "server.cli", "serve", "--model", SCRIPTED_MODEL, "--moderation", value]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and expected in done.stderr + done.stdout, done.stderr


def test_a_checker_that_cannot_load_is_the_workers_start_up_error(tmp_path):
    settings = Settings(
        model=SCRIPTED_MODEL, moderation="tests.support.no_such_checkers:factory", results_dir=str(tmp_path)
    )
    with thread_server(create_app(settings), wait_ready=False) as base_url:
        ready = wait_for(lambda: (r := httpx.get(f"{base_url}/ready")).json().get("error") and r)
        assert ready.status_code == 503
        assert "--moderation 'tests.support.no_such_checkers:factory': ModuleNotFoundError" in ready.json()["error"]


def test_worker_hosts_of_a_redis_store_block_the_same_way(tmp_path, word_list):
    require_redis_server()
    with Cluster(tmp_path, model=SCRIPTED_MODEL, extra=("--moderation", f"wordlist:{word_list}")) as cluster:
        cluster.start_worker()
        api = cluster.start_api()
        cluster.wait_for_workers(1)
        client = SegmindClient(base_url=f"{api}/v1")
        with pytest.raises(SegmindError) as refused:
            client.run_sync(SLUG, image=png_data_uri(), prompt="zebra stripes", **SMALL)
        assert refused.value.status == 422 and refused.value.detail == PROMPT_BLOCKED
        job = client.submit_async(SLUG, image=png_data_uri(), prompt="zebra stripes", **SMALL)
        with pytest.raises(InferenceFailed) as failed:
            job.wait(timeout=120, interval=0.2)
        assert failed.value.detail == PROMPT_BLOCKED
        assert client.submit_async(SLUG, image=png_data_uri(), prompt="zebra", **SMALL).wait(timeout=120)["output"]


def test_every_input_image_is_checked_keyframes_too_and_text_to_video_has_none():
    checker = "tests.support.content_checkers:refuse_marked_inputs"
    with cli_server("--model", SCRIPTED_MODEL, "--moderation", checker) as (base_url, _):
        client = SegmindClient(base_url=f"{base_url}/v1")
        marked = png_data_uri(*MARKED_SIZE)
        with pytest.raises(SegmindError) as refused:
            client.run_sync(SLUG, image=marked, prompt="a cat", **SMALL)
        assert (
            refused.value.status == 422 and refused.value.detail == "content blocked: input image: the marked picture"
        )

        keyframes = [{"image": png_data_uri(), "frame": 4}, {"image": marked, "frame": 8}]
        job = client.submit_async(SLUG, image=png_data_uri(), prompt="a cat", keyframes=keyframes, **SMALL)
        with pytest.raises(InferenceFailed) as failed:
            job.wait(timeout=120, interval=0.2)
        assert failed.value.detail == "content blocked: input image: the marked picture"

        unmarked = [{"image": png_data_uri(), "frame": 8}]
        done = client.submit_async(SLUG, image=png_data_uri(), prompt="a cat", keyframes=unmarked, **SMALL)
        assert done.wait(timeout=120)["status"] == "COMPLETED"
        assert client.submit_async("ltx-2-19b-t2v", prompt="a cat", **SMALL).wait(timeout=120)["status"] == "COMPLETED"
        assert blocked_counts(base_url) == {"prompt": 0, "input": 2, "output": 0}
