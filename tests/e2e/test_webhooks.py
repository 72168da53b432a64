"""Webhooks against a real receiver on loopback: signed, exactly once, retried, never holding up jobs."""

from __future__ import annotations

import time

import httpx
import pytest

from server.api.app import create_app
from server.jobs.webhooks import check_webhook_url
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL
from tests.support.servers import png_data_uri, thread_server
from tests.support.webhooks import SECRET, receiver_on_loopback, verified, wait_for

SLUG = "ltx-2-19b-i2v"
@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory):
    settings = Settings(
        model=SCRIPTED_MODEL,
        results_dir=str(tmp_path_factory.mktemp("results")),
        webhook_secret=SECRET,
        webhook_retries=2,
        webhook_backoff=0.2,
    )
    with thread_server(create_app(settings)) as base_url:
        yield base_url


def submit(base_url: str, prompt: str, webhook: str | None) -> httpx.Response:
    body = {"image": png_data_uri(), "prompt": prompt, "width": 256, "height": 256, "num_frames": 9, "fps": 8}
    if webhook is not None:
        body["webhook"] = webhook
    return httpx.post(f"{base_url}/v2/{SLUG}", json=body, timeout=30)


def test_each_job_gets_exactly_one_verified_final_call(webhook_server):
    with receiver_on_loopback() as (receiver, url):
        done = submit(webhook_server, "ok", f"{url}/ok").json()["request_id"]
        failed = submit(webhook_server, "fail", f"{url}/ok").json()["request_id"]
        wait_for(lambda: receiver.for_job(done) and receiver.for_job(failed))
        time.sleep(0.5)  # room for a duplicate to show up
        [done_call], [failed_call] = receiver.for_job(done), receiver.for_job(failed)
        done_body, failed_body = verified(done_call), verified(failed_call)
        assert done_body == httpx.get(f"{webhook_server}/v2/requests/{done}").json() | {"metrics": done_body["metrics"]}
        assert done_body["status"] == "COMPLETED" and done_body["output"].startswith(webhook_server + "/outputs/")
        assert failed_body["status"] == "FAILED" and "scripted failure" in failed_body["error"]


def test_a_failing_receiver_is_retried_with_backoff_and_does_not_slow_the_next_job(webhook_server):
    with receiver_on_loopback() as (receiver, url):
        first = submit(webhook_server, "ok", f"{url}/slow-fail").json()["request_id"]
        wait_for(lambda: receiver.for_job(first))
        second = submit(webhook_server, "ok", f"{url}/ok").json()["request_id"]
        wait_for(lambda: receiver.for_job(second))
        second_body = verified(receiver.for_job(second)[0])
        # The second job ran while the first one's receiver was still failing (1 s per attempt).
        assert second_body["metrics"]["queue_time"] < 0.5
        assert len(receiver.for_job(first)) < 3
        wait_for(lambda: len(receiver.for_job(first)) == 3, timeout=30)
        attempts = receiver.for_job(first)
        assert [call["headers"]["x-ltx2-delivery-attempt"] for call in attempts] == ["1", "2", "3"]
        assert attempts[2]["at"] - attempts[1]["at"] > attempts[1]["at"] - attempts[0]["at"] - 0.1
        time.sleep(1.5)
        assert len(receiver.for_job(first)) == 3 and len(receiver.for_job(second)) == 1


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("ftp://example.com/x", "webhook: must be an http(s) URL"),
        ("http://169.254.169.254/latest/meta-data", "webhook: must be an http(s) URL"),
        ("http://[fe80::1]/x", "webhook"),
        ("http:///nohost", "webhook"),
    ],
)
def test_unsafe_or_malformed_webhook_urls_are_refused_at_submission(webhook_server, url, fragment):
    response = submit(webhook_server, "ok", url)
    assert response.status_code == 400 and fragment in response.json()["error"]


def test_addresses_are_checked_after_resolving_and_loopback_is_allowed():
    import asyncio

    from server.errors import InvalidRequest
    from server.jobs.netguard import check_url

    def check(url: str):
        return asyncio.run(check_url(url, block_private=False, timeout=5, field="webhook"))

    for url in ("http://169.254.169.254/latest", "http://[::ffff:169.254.169.254]/x", "http://100.100.100.200/"):
        with pytest.raises(InvalidRequest, match="webhook: refused to connect"):
            check(url)
    assert check("http://localhost:1/hook").address in ("127.0.0.1", "::1")  # on-prem receivers are often local
    assert check_webhook_url("https://example.com/hook") == "https://example.com/hook"


def test_without_a_secret_a_webhook_submission_is_refused(scripted_server):
    response = submit(scripted_server, "ok", "http://127.0.0.1:9/x")
    assert response.status_code == 400 and "webhook-secret" in response.json()["error"]
