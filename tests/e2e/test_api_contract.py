"""The Segmind wire contract over real HTTP, with the real worker process running a scripted generator."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from server.api.app import create_app
from server.clock import ManualClock
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final
from tests.support.media_probe import probe_mp4
from tests.support.servers import image_host, make_png, thread_server


def test_v2_submit_poll_and_fetch(scripted_server, tmp_path):
    submitted = submit(scripted_server, payload())
    assert submitted.status_code == 200
    body = submitted.json()
    assert body["status"] == "QUEUED"
    request_id = body["request_id"]
    assert body["status_url"] == f"{scripted_server}/v2/requests/{request_id}/status"
    assert body["response_url"] == f"{scripted_server}/v2/requests/{request_id}"
    assert body["poll_url"] == f"{scripted_server}/v1/requests/{request_id}"

    status = wait_final(body["status_url"])
    assert status.status_code == 200
    assert status.json()["status"] == "COMPLETED"
    assert set(status.json()["metrics"]) >= {"queue_time", "inference_time", "total_time"}

    result = httpx.get(body["response_url"]).json()
    assert result["status"] == "COMPLETED" and result["seed"] == 42 and result["prompt"] == "a calm lake"
    assert result["output"].startswith(scripted_server + "/outputs/")
    assert result["video"]["content_type"] == "video/mp4"
    assert httpx.get(body["poll_url"]).json()["output"] == result["output"]

    video = httpx.get(result["output"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == result["video"]["file_size"]
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    assert probe_mp4(path)["frame_count"] == 9


def test_v1_returns_the_mp4_with_segmind_headers(scripted_server):
    response = httpx.post(f"{scripted_server}/v1/{SLUG}", json=payload(seed=7), timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"
    assert response.headers["x-seed-value"] == "7"
    assert float(response.headers["x-generation-time"]) >= 0
    assert (
        httpx.get(f"{scripted_server}/v2/requests/{response.headers['x-request-id']}/status").json()["status"]
        == "COMPLETED"
    )


def test_random_seed_is_reported(scripted_server):
    response = httpx.post(f"{scripted_server}/v1/{SLUG}", json=payload(seed=-1), timeout=60)
    assert response.status_code == 200 and int(response.headers["x-seed-value"]) >= 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("width", 255),
        ("width", 1281),
        ("height", 250),
        ("height", 2000),
        ("num_frames", 0),
        ("num_frames", 401),
        ("fps", 0),
        ("fps", 31),
        ("guidance_scale", 0.9),
        ("guidance_scale", 20.5),
        ("seed", -7),
        ("width", "abc"),
        ("prompt", ""),
        ("image", ""),
    ],
)
def test_out_of_range_parameters_get_400_naming_the_field(scripted_server, field, value):
    for version in ("v1", "v2"):
        response = httpx.post(f"{scripted_server}/{version}/{SLUG}", json={**payload(), field: value})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error.startswith(f"{field}:") and " to " in error


def test_missing_required_parameters_get_400(scripted_server):
    response = httpx.post(f"{scripted_server}/v2/{SLUG}", json={"width": 256})
    assert response.status_code == 400
    assert "image: required" in response.json()["error"] and "prompt: required" in response.json()["error"]


@pytest.mark.parametrize(
    "content,content_type,fragment",
    [
        (b'{"image": "x", "prompt": ', "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b"image=x&prompt=y", "application/x-www-form-urlencoded", "JSON object"),
        (b"", "application/json", "required"),
    ],
)
def test_malformed_bodies_get_400(scripted_server, content, content_type, fragment):
    response = httpx.post(f"{scripted_server}/v2/{SLUG}", content=content, headers={"content-type": content_type})
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_unknown_ids_get_404_in_segmind_words(scripted_server):
    for path in ("/v2/requests/nope/status", "/v2/requests/nope", "/v1/requests/nope"):
        response = httpx.get(scripted_server + path)
        assert response.status_code == 404
        assert response.json()["error"].startswith("Request nope not found (results are kept for")


def test_unknown_model_slug_gets_404(scripted_server):
    for version in ("v1", "v2"):
        response = httpx.post(f"{scripted_server}/{version}/flux-schnell", json=payload())
        assert response.status_code == 404 and "flux-schnell" in response.json()["error"]


def test_unknown_route_gets_json_404(scripted_server):
    response = httpx.get(f"{scripted_server}/v3/whatever")
    assert response.status_code == 404 and "error" in response.json()


def test_failed_job_is_422_with_the_error_on_status_and_result(scripted_server):
    body = submit(scripted_server, payload("please fail")).json()
    status = wait_final(body["status_url"])
    assert status.status_code == 422
    assert status.json()["status"] == "FAILED"
    assert "scripted failure" in status.json()["error"]
    result = httpx.get(body["response_url"])
    assert result.status_code == 422 and result.json()["status"] == "FAILED"


def test_ffmpeg_failure_fails_the_job_with_ffmpegs_own_words(scripted_server):
    body = submit(scripted_server, payload("badmux")).json()
    status = wait_final(body["status_url"])
    assert status.status_code == 422
    error = status.json()["error"]
    assert error.startswith("encoding the video failed") and "no-such-preset" in error
    assert wait_final(submit(scripted_server, payload()).json()["status_url"]).json()["status"] == "COMPLETED"


def test_v1_generation_failure_is_500_and_input_failure_is_400(scripted_server):
    failed = httpx.post(f"{scripted_server}/v1/{SLUG}", json=payload("please fail"), timeout=60)
    assert failed.status_code == 500 and "scripted failure" in failed.json()["error"]
    bad_input = httpx.post(f"{scripted_server}/v1/{SLUG}", json=payload("unreadable"), timeout=60)
    assert bad_input.status_code == 400 and bad_input.json()["error"].startswith("image:")


def test_undecodable_inline_image_is_400_at_submission(scripted_server):
    garbage = base64.b64encode(b"this is not a picture").decode()
    for image in (garbage, "data:image/png;base64," + garbage, "%%%not-base64%%%"):
        response = submit(scripted_server, payload(image=image))
        assert response.status_code == 400 and response.json()["error"].startswith("image:")


def test_image_urls_are_fetched_and_bad_ones_fail_the_job_with_the_reason(scripted_server):
    routes = {
        "/good.png": (200, "image/png", make_png()),
        "/lies.png": (200, "image/png", b"<html>not an image</html>"),
        # The content decides, not the header.
        "/mislabelled": (200, "text/plain", make_png()),
    }
    with image_host(routes) as host:
        good = submit(scripted_server, payload(image=f"{host}/good.png")).json()
        assert wait_final(good["status_url"]).json()["status"] == "COMPLETED"
        mislabelled = submit(scripted_server, payload(image=f"{host}/mislabelled")).json()
        assert wait_final(mislabelled["status_url"]).json()["status"] == "COMPLETED"

        missing = submit(scripted_server, payload(image=f"{host}/missing.png")).json()
        status = wait_final(missing["status_url"])
        assert status.status_code == 422 and "HTTP 404" in status.json()["error"]

        lies = submit(scripted_server, payload(image=f"{host}/lies.png")).json()
        assert "cannot be decoded" in wait_final(lies["status_url"]).json()["error"]

        v1 = httpx.post(f"{scripted_server}/v1/{SLUG}", json=payload(image=f"{host}/missing.png"), timeout=60)
        assert v1.status_code == 400 and v1.json()["error"].startswith("image:")
    assert httpx.get(f"{scripted_server}/health").json() == {"status": "ok"}


def test_killed_worker_fails_its_job_and_queued_jobs_go_on(scripted_server):
    crashing = submit(scripted_server, payload("crash now")).json()
    queued = [submit(scripted_server, payload(f"afterwards {i}")).json() for i in range(2)]
    status = wait_final(crashing["status_url"])
    assert status.status_code == 422
    assert "worker process died" in status.json()["error"]
    for job in queued:
        assert wait_final(job["status_url"]).json()["status"] == "COMPLETED"
    ready = httpx.get(f"{scripted_server}/ready").json()
    assert ready["ready"] is True and ready["worker_restarts"] >= 1


def test_openapi_describes_parameters_with_defaults_and_ranges(scripted_server):
    spec = httpx.get(f"{scripted_server}/openapi.json").json()
    schema = spec["components"]["schemas"]["I2VParams"]["properties"]
    assert (
        schema["width"]["minimum"] == 256 and schema["width"]["maximum"] == 1280 and schema["width"]["default"] == 720
    )
    assert schema["num_frames"]["maximum"] == 400 and schema["fps"]["default"] == 24
    assert httpx.get(f"{scripted_server}/docs").status_code == 200


def test_api_keys_gate_every_job_route_and_isolate_jobs(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nkey-alpha alpha team\nkey-beta\n")
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path / "r"), api_keys=str(keys)))
    with thread_server(app) as base_url:
        assert submit(base_url, payload()).status_code == 401
        wrong = submit(base_url, payload(), headers={"x-api-key": "key-gamma"})
        assert wrong.status_code == 401 and "error" in wrong.json()
        alpha = {"x-api-key": "key-alpha"}
        body = submit(base_url, payload(), headers=alpha).json()
        assert wait_final(body["status_url"], headers=alpha).json()["status"] == "COMPLETED"
        assert httpx.get(body["status_url"]).status_code == 401
        assert httpx.get(body["status_url"], headers={"x-api-key": "key-beta"}).status_code == 404
        assert httpx.get(body["response_url"], headers={"x-api-key": "key-beta"}).status_code == 404
        assert httpx.get(f"{base_url}/health").status_code == 200


def test_jobs_and_files_expire_after_the_ttl(tmp_path):
    clock = ManualClock()
    results = tmp_path / "results"
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(results), ttl_seconds=3600, sweep_interval=0.02)
    with thread_server(create_app(settings, clock=clock)) as base_url:
        body = submit(base_url, payload()).json()
        assert wait_final(body["status_url"]).json()["status"] == "COMPLETED"
        output = httpx.get(body["response_url"]).json()["output"]
        job_dir = results / body["request_id"]
        assert (job_dir / "output.mp4").is_file()

        clock.advance(3599)
        time.sleep(0.2)
        assert httpx.get(body["status_url"]).status_code == 200

        clock.advance(1)
        deadline = time.monotonic() + 5
        while job_dir.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not job_dir.exists()
        gone = httpx.get(body["status_url"]).json()["error"]
        assert gone.startswith(f"Request {body['request_id']} not found (results are kept for")
        assert httpx.get(body["response_url"]).status_code == 404
        assert httpx.get(output).status_code == 404


def test_output_url_needs_its_token(scripted_server):
    body = submit(scripted_server, payload()).json()
    wait_final(body["status_url"])
    output = httpx.get(body["response_url"]).json()["output"]
    forged = output.replace("/outputs/" + body["request_id"] + "/", "/outputs/" + body["request_id"] + "/AAAA")
    assert httpx.get(forged).status_code == 404


def test_public_url_is_the_base_of_every_absolute_url(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), public_url="https://videos.example.com/")
    with thread_server(create_app(settings)) as base_url:
        body = submit(base_url, payload()).json()
        assert body["status_url"] == f"https://videos.example.com/v2/requests/{body['request_id']}/status"
        assert body["response_url"].startswith("https://videos.example.com/v2/requests/")
        assert body["poll_url"].startswith("https://videos.example.com/v1/requests/")
        local_status = body["status_url"].replace("https://videos.example.com", base_url)
        assert wait_final(local_status).json()["status"] == "COMPLETED"
        result = httpx.get(body["response_url"].replace("https://videos.example.com", base_url)).json()
        assert result["output"].startswith("https://videos.example.com/outputs/")


def test_full_queue_answers_429_with_retry_after(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), max_queue=1)
    with thread_server(create_app(settings)) as base_url:
        running = submit(base_url, payload("slow")).json()
        deadline = time.monotonic() + 10
        while httpx.get(running["status_url"]).json()["status"] != "PROCESSING":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = submit(base_url, payload("slow"))
        assert queued.status_code == 200
        refused = submit(base_url, payload())
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0 and "queue is full" in refused.json()["error"]
        assert wait_final(queued.json()["status_url"]).json()["status"] == "COMPLETED"
        assert submit(base_url, payload()).status_code == 200


def test_v1_caller_past_the_sync_timeout_gets_504_and_the_job_goes_on(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), sync_timeout=0.3)
    with thread_server(create_app(settings)) as base_url:
        response = httpx.post(f"{base_url}/v1/{SLUG}", json=payload("slow"), timeout=30)
        assert response.status_code == 504
        error = response.json()["error"]
        assert "poll it through /v2" in error
        request_id = response.headers["x-request-id"]
        assert request_id in error
        status = wait_final(f"{base_url}/v2/requests/{request_id}/status")
        assert status.json()["status"] == "COMPLETED"


def test_forwarded_headers_shape_urls_only_when_trusted(scripted_server, tmp_path):
    forwarded = {"x-forwarded-host": "gpu.example.com", "x-forwarded-proto": "https", "x-forwarded-prefix": "/ltx"}
    untrusted = submit(scripted_server, payload(), headers=forwarded).json()
    # (uvicorn itself honours X-Forwarded-Proto from loopback; host and prefix need the option)
    assert "gpu.example.com" not in untrusted["status_url"] and "/ltx/" not in untrusted["status_url"]

    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), trust_forwarded_headers=True)
    with thread_server(create_app(settings)) as base_url:
        body = submit(base_url, payload(), headers=forwarded).json()
        assert body["status_url"] == f"https://gpu.example.com/ltx/v2/requests/{body['request_id']}/status"
        assert submit(base_url, payload()).json()["status_url"].startswith(base_url)
