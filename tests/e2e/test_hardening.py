"""Cancellation, per-job time limit, worker faults, per-key limits and credits, body and prompt caps,
over real HTTP with the real worker subprocess running the scripted fixture generator."""

from __future__ import annotations

import time

import httpx
import pytest

from server.api.app import create_app
from server.clock import ManualClock
from server.jobs.limits import parse_key_line
from server.settings import Settings, settings_from_env
from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final, wait_for, wait_processing
from tests.support.servers import thread_server


def restarts(base_url: str) -> int:
    return httpx.get(f"{base_url}/ready").json()["worker_restarts"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A scripted server with short time limits; yields (base_url, results_dir)."""
    results = tmp_path_factory.mktemp("results")
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(results), cancel_grace=1.0, job_timeout=3.0)
    app = create_app(settings)
    with thread_server(app) as base_url:
        yield base_url, results, app


# ---- cancellation ---------------------------------------------------------------------------


def test_cancelling_a_running_job_stops_it_between_steps_and_frees_the_worker(server):
    base_url, results, _ = server
    before = restarts(base_url)
    job = submit(base_url, payload("steps")).json()
    wait_processing(job["status_url"])
    time.sleep(0.2)
    cancelled = httpx.delete(job["response_url"], timeout=30)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "FAILED" and cancelled.json()["error"] == "cancelled"

    status = httpx.get(job["status_url"])
    assert status.status_code == 422 and status.json()["error"] == "cancelled"
    # Stopped before decoding and muxing: no video was written.
    assert not (results / job["request_id"] / "output.mp4").exists()
    # The worker stopped the job itself (no kill, no restart) and takes the next job.
    assert restarts(base_url) == before
    following = submit(base_url, payload()).json()
    assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_cancelling_a_queued_job_drops_it_and_the_queue_goes_on(server):
    base_url, _, _ = server
    running = submit(base_url, payload("steps")).json()
    wait_processing(running["status_url"])
    queued = submit(base_url, payload()).json()
    after = submit(base_url, payload()).json()
    response = httpx.delete(queued["response_url"])
    assert response.status_code == 200 and response.json()["error"] == "cancelled"
    assert httpx.get(queued["status_url"]).json()["status"] == "FAILED"
    httpx.delete(running["response_url"], timeout=30)
    assert wait_final(after["status_url"]).json()["status"] == "COMPLETED"
    assert httpx.get(queued["status_url"]).json()["error"] == "cancelled"


def test_cancel_is_idempotent_and_refused_for_finished_or_unknown_jobs(server):
    base_url, _, _ = server
    done = submit(base_url, payload()).json()
    wait_final(done["status_url"])
    refused = httpx.delete(done["response_url"])
    assert refused.status_code == 409 and "already finished (COMPLETED)" in refused.json()["error"]
    gone = httpx.delete(f"{base_url}/v2/requests/no-such-id").json()["error"]
    assert gone.startswith("Request no-such-id not found (results are kept for")

    job = submit(base_url, payload("steps")).json()
    wait_processing(job["status_url"])
    assert httpx.delete(job["response_url"], timeout=30).status_code == 200
    again = httpx.delete(job["response_url"])
    assert again.status_code == 200 and again.json()["error"] == "cancelled"


def test_a_generator_that_ignores_cancel_is_killed_after_the_grace_and_the_worker_restarts(server):
    base_url, _, _ = server
    before = restarts(base_url)
    job = submit(base_url, payload("hang")).json()
    wait_processing(job["status_url"])
    response = httpx.delete(job["response_url"], timeout=30)
    assert response.status_code == 200 and response.json()["error"] == "cancelled"
    wait_for(lambda: restarts(base_url) == before + 1)
    following = submit(base_url, payload()).json()
    assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_v1_caller_whose_job_is_cancelled_gets_409(server):
    base_url, _, app = server
    import threading

    answers = []
    thread = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{base_url}/v1/{SLUG}", json=payload("steps"), timeout=60))
    )
    thread.start()
    job_id = wait_for(lambda: _processing_job_id(app))
    httpx.delete(f"{base_url}/v2/requests/{job_id}", timeout=30)
    thread.join(30)
    assert answers[0].status_code == 409 and "cancelled" in answers[0].json()["error"]
    assert answers[0].headers["x-request-id"] == job_id


def _processing_job_id(app) -> str | None:
    # A /v1 caller learns its id only from the answer; the test finds it in the job table.
    running = [job.id for job in app.state.service.store.all_jobs() if job.status.value == "PROCESSING"]
    return running[0] if running else None


# ---- time limit and faults ------------------------------------------------------------------


def test_a_job_past_the_time_limit_fails_timed_out_and_the_worker_restarts(server):
    base_url, _, _ = server
    before = restarts(base_url)
    job = submit(base_url, payload("hang")).json()
    final = wait_final(job["status_url"])
    assert final.status_code == 422
    assert final.json()["error"].startswith("timed out: the job ran past the 3 s limit")
    wait_for(lambda: restarts(base_url) == before + 1)
    following = submit(base_url, payload()).json()
    assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_running_out_of_memory_fails_the_job_and_the_worker_goes_on(server):
    base_url, _, _ = server
    job = submit(base_url, payload("oom")).json()
    final = wait_final(job["status_url"])
    assert final.status_code == 422 and final.json()["error"] == "generation ran out of memory"
    following = submit(base_url, payload()).json()
    assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_a_full_disk_fails_the_job_with_the_reason_and_the_worker_goes_on(server):
    base_url, _, _ = server
    job = submit(base_url, payload("diskfull")).json()
    final = wait_final(job["status_url"])
    assert final.status_code == 422
    error = final.json()["error"]
    assert error.startswith("encoding the video failed") and "No space left on device" in error
    following = submit(base_url, payload()).json()
    assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_a_results_file_deleted_under_the_server_gets_a_clear_410(server):
    base_url, results, _ = server
    job = submit(base_url, payload()).json()
    wait_final(job["status_url"])
    output = httpx.get(job["response_url"]).json()["output"]
    (results / job["request_id"] / "output.mp4").unlink()
    gone = httpx.get(output)
    assert gone.status_code == 410 and "no longer in the results directory" in gone.json()["error"]
    result = httpx.get(job["response_url"])
    assert result.status_code == 200 and result.json()["video"]["file_size"] is None
    assert httpx.get(f"{base_url}/health").status_code == 200


# ---- request caps ---------------------------------------------------------------------------


def test_request_bodies_past_the_cap_get_413_with_or_without_a_length(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), max_body_bytes=4096, max_prompt_chars=20)
    with thread_server(create_app(settings)) as base_url:
        big = {"image": "A" * 5000, "prompt": "p"}
        refused = httpx.post(f"{base_url}/v2/{SLUG}", json=big)
        assert refused.status_code == 413 and "4096 byte limit" in refused.json()["error"]

        def chunks():
            yield b'{"image": "'
            for _ in range(10):
                yield b"A" * 1000
            yield b'", "prompt": "p"}'

        chunked = httpx.post(f"{base_url}/v2/{SLUG}", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and "4096 byte limit" in chunked.json()["error"]

        long_prompt = submit(base_url, payload("x" * 21))
        assert long_prompt.status_code == 400
        assert long_prompt.json()["error"] == "prompt: must be a string of at most 20 characters; got 21"
        assert submit(base_url, payload("x" * 20)).status_code == 200


# ---- keys, rate limits and credits ----------------------------------------------------------


def test_key_lines_carry_labels_and_budgets():
    assert parse_key_line("# a comment") is None
    policy = parse_key_line("k-1 render farm jobs=5 gpu-seconds=90.5 rate=3")
    assert (policy.key, policy.label, policy.jobs, policy.gpu_seconds, policy.rate) == (
        "k-1",
        "render farm",
        5,
        90.5,
        3,
    )
    with pytest.raises(ValueError, match="jobs must be a number"):
        parse_key_line("k jobs=many", "keys.txt:3")


def test_a_bad_budget_in_the_keys_file_is_a_start_up_error(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("good-key\nk2 jobs=-3\n")
    assert Settings(api_keys=str(keys)).problems() == [f"api-keys: {keys}:2: jobs must be 0 or more; got '-3'"]


def test_keys_come_from_the_environment_too():
    settings = settings_from_env({"LTX2_API_KEYS": "alpha, beta", "LTX2_RATE_LIMIT": "7"})
    assert settings.parsed_api_keys() == frozenset({"alpha", "beta"}) and settings.rate_limit == 7


def test_rate_limit_per_key_answers_429_with_retry_after_and_reset_time(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("key-a team a\nkey-b team b rate=1\n")
    clock = ManualClock(start=1_700_000_000.0)
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path / "r"), api_keys=str(keys), rate_limit=2)
    with thread_server(create_app(settings, clock=clock)) as base_url:
        a, b = {"x-api-key": "key-a"}, {"x-api-key": "key-b"}
        assert submit(base_url, payload(), headers=a).status_code == 200
        clock.advance(10)
        assert submit(base_url, payload(), headers=a).status_code == 200
        limited = submit(base_url, payload(), headers=a)
        assert limited.status_code == 429 and "at most 2 submissions per minute" in limited.json()["error"]
        assert limited.headers["retry-after"] == "50"
        assert limited.headers["x-rate-limit-reset-at-utc"] == "2023-11-14T22:14:20Z"
        # Per key: b has its own (smaller) allowance; polls are never limited.
        assert submit(base_url, payload(), headers=b).status_code == 200
        assert submit(base_url, payload(), headers=b).status_code == 429
        clock.advance(50)
        assert submit(base_url, payload(), headers=a).status_code == 200


def test_spent_credits_answer_406_insufficient_credits(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("key-jobs jobs=2\nkey-time gpu-seconds=0.001\n")
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path / "r"), api_keys=str(keys))
    with thread_server(create_app(settings)) as base_url:
        by_jobs = {"x-api-key": "key-jobs"}
        assert submit(base_url, payload(), headers=by_jobs).status_code == 200
        assert submit(base_url, payload(), headers=by_jobs).status_code == 200
        spent = submit(base_url, payload(), headers=by_jobs)
        assert spent.status_code == 406 and spent.json()["error"].startswith("Insufficient credits")

        by_time = {"x-api-key": "key-time"}
        first = submit(base_url, payload(), headers=by_time).json()
        wait_final(first["status_url"], headers=by_time)
        spent = wait_for(lambda: (r := submit(base_url, payload(), headers=by_time)).status_code == 406 and r)
        assert "GPU seconds" in spent.json()["error"]


def test_jobs_stay_private_to_their_key_including_cancel(tmp_path):
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path), api_keys="key-a,key-b")
    with thread_server(create_app(settings)) as base_url:
        a, b = {"x-api-key": "key-a"}, {"x-api-key": "key-b"}
        job = submit(base_url, payload("slow"), headers=a).json()
        assert httpx.delete(job["response_url"], headers=b).status_code == 404
        assert httpx.delete(job["response_url"]).status_code == 401
        assert wait_final(job["status_url"], headers=a).json()["status"] == "COMPLETED"


# ---- the official SDK sees the same --------------------------------------------------------


def test_the_segmind_sdk_reports_cancellation_rate_limits_and_credits(tmp_path):
    from segmind import InferenceFailed, SegmindClient
    from segmind.exceptions import SegmindError

    keys = tmp_path / "keys.txt"
    keys.write_text("key-sdk sdk user jobs=2 rate=10\nkey-fast rate=1\n")
    settings = Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path / "r"), api_keys=str(keys))
    with thread_server(create_app(settings)) as base_url:
        client = SegmindClient(api_key="key-sdk", base_url=f"{base_url}/v1")
        job = client.submit_async(SLUG, **payload("steps"))
        wait_processing(f"{base_url}/v2/requests/{job.request_id}/status", headers={"x-api-key": "key-sdk"})
        httpx.delete(f"{base_url}/v2/requests/{job.request_id}", headers={"x-api-key": "key-sdk"}, timeout=30)
        with pytest.raises(InferenceFailed) as failed:
            job.wait(timeout=30, interval=0.1)
        assert failed.value.detail == "cancelled"

        client.submit_async(SLUG, **payload())
        with pytest.raises(SegmindError) as spent:
            client.submit_async(SLUG, **payload())
        assert spent.value.status == 406 and spent.value.detail.startswith("Insufficient credits")

        limited_client = SegmindClient(api_key="key-fast", base_url=f"{base_url}/v1")
        limited_client.submit_async(SLUG, **payload())
        with pytest.raises(SegmindError) as limited:
            limited_client.submit_async(SLUG, **payload())
        assert limited.value.status == 429 and "submissions per minute" in limited.value.detail


def test_repeated_crashes_back_off_a_lone_crash_restarts_at_once():
    from server.workers.supervisor import MAX_RESTART_DELAY, crash_restart_delay

    assert [crash_restart_delay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert crash_restart_delay(30) == MAX_RESTART_DELAY


def test_crashes_in_a_row_fail_their_jobs_and_the_queued_job_still_runs(server):
    base_url, _, _ = server
    before = restarts(base_url)
    crashes = [submit(base_url, payload("crash")).json() for _ in range(2)]
    survivor = submit(base_url, payload()).json()
    for job in crashes:
        final = wait_final(job["status_url"])
        assert final.status_code == 422 and "the worker process died while generating this job" in final.json()["error"]
    assert wait_final(survivor["status_url"]).json()["status"] == "COMPLETED"
    assert restarts(base_url) == before + 2


def test_without_keys_a_public_bind_is_warned_about_and_loopback_is_the_default(caplog):
    from server.cli.serve import warn_if_open_without_auth

    assert Settings().host == "127.0.0.1"
    with caplog.at_level("WARNING", logger="ltx2.cli"):
        warn_if_open_without_auth(Settings(host="127.0.0.1"))
        warn_if_open_without_auth(Settings(host="0.0.0.0", api_keys="a-key"))
        assert caplog.records == []
        warn_if_open_without_auth(Settings(host="0.0.0.0"))
    assert "authentication is OFF and the server listens on 0.0.0.0" in caplog.text
