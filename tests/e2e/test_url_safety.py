"""Hostile URLs and paths through the real HTTP interface, on both stores: control characters refused in
every URL field, non-ASCII download tokens, webhook URLs no delivery can send, CR/LF in request paths,
and credentials in image and webhook URLs kept out of logs and error messages."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import httpx
import pytest

from server.api.app import create_app
from server.jobs.webhooks import WebhookSender
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL
from tests.support.redis_server import require_redis_server
from tests.support.scale_out import Cluster
from tests.support.servers import cli_server, image_host, make_png, png_data_uri, thread_server
from tests.support.webhooks import SECRET, receiver_on_loopback, verified, wait_for

SLUG = "ltx-2-19b-i2v"
SMALL = {"width": 256, "height": 256, "num_frames": 9, "fps": 8}
KEY = "url-safety-key"
# C0 (NUL, TAB, LF, CR, ESC), DEL and C1 (NEL): each refused wherever it sits in the URL.
CONTROL_CHARACTERS = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"]
# Secrets a client puts in URLs: none of them may reach a log line or an error message.
SECRETS = ("alice-pass-1", "SIGSECRET2", "CREDSECRET3", "TOKSECRET4", "HOOKPASS5", "HOOKTOKEN6")


def log_path(base_url: str) -> Path:
    port = base_url.rsplit(":", 1)[1]
    return Path(os.environ.get("LTX2_TEST_LOG_DIR", "/tmp")) / f"ltx2-server-{port}.log"


def post(base_url: str, path: str = f"/v2/{SLUG}", **fields) -> httpx.Response:
    body = {"image": png_data_uri(), "prompt": "ok", **SMALL, **fields}
    return httpx.post(f"{base_url}{path}", json=body, headers={"x-api-key": KEY}, timeout=30)


def wait_final(base_url: str, request_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{base_url}/v2/requests/{request_id}/status", headers={"x-api-key": KEY}, timeout=10)
        if response.json().get("status") in ("COMPLETED", "FAILED"):
            return response.json()
        time.sleep(0.05)
    raise TimeoutError(request_id)


def completed_job(base_url: str) -> dict:
    request_id = post(base_url).json()["request_id"]
    assert wait_final(base_url, request_id)["status"] == "COMPLETED"
    return httpx.get(f"{base_url}/v2/requests/{request_id}", headers={"x-api-key": KEY}, timeout=10).json()


def assert_control_characters_refused(base_url: str, receiver_url: str) -> None:
    for char in CONTROL_CHARACTERS:
        for field, url in (("image", f"{receiver_url}/img.png"), ("webhook", f"{receiver_url}/ok")):
            for hostile in (f"{url}?a=1{char}x-injected: 1", f"{url}{char}"):
                response = post(base_url, **{field: hostile})
                assert response.status_code == 400, (field, repr(hostile), response.text)
                error = response.json()["error"]
                assert error.startswith(f"{field}: ") and "control character" in error, error
    # The blocking route validates the same way.
    response = post(base_url, f"/v1/{SLUG}", image=f"{receiver_url}/img.png\r\nx: 1")
    assert response.status_code == 400 and response.json()["error"].startswith("image: ")


def assert_non_ascii_tokens_are_404(base_url: str) -> None:
    result = completed_job(base_url)
    request_id, output = result["request_id"], result["output"]
    assert httpx.get(output, timeout=30).status_code == 200
    for token in ("%C3%A9", "\u00e9t\u00e9", "%E2%98%83" * 8, "%FF%FE", "%F0%9F%92%A5"):
        response = httpx.get(f"{base_url}/outputs/{request_id}/{token}/{request_id}.mp4", timeout=10)
        assert response.status_code == 404, (token, response.text)
        assert response.json()["error"].startswith(f"Request {request_id} not found (results are kept for")


# ---- in-memory store ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"{KEY} url safety\n")
    settings = Settings(
        model=SCRIPTED_MODEL,
        results_dir=str(tmp_path_factory.mktemp("results")),
        api_keys=str(keys),
        webhook_secret=SECRET,
        webhook_retries=1,
        webhook_backoff=0.1,
    )
    with thread_server(create_app(settings)) as base_url:
        yield base_url


def test_control_characters_in_every_url_field_are_refused_naming_the_field(memory_server):
    assert_control_characters_refused(memory_server, "http://127.0.0.1:9")
    # Line-wrapped base64 is no URL: its line breaks stay allowed.
    wrapped = png_data_uri().split(",", 1)[1]
    wrapped = "\r\n".join(wrapped[i : i + 76] for i in range(0, len(wrapped), 76))
    assert post(memory_server, image=wrapped).status_code == 200


def test_a_non_ascii_download_token_is_a_404_like_any_wrong_token(memory_server):
    assert_non_ascii_tokens_are_404(memory_server)


def test_a_delivery_to_a_url_no_request_can_carry_is_given_up_and_logged_not_raised(caplog):
    """A URL stored before submissions refused control characters: each attempt ends as a logged
    failure with the request id; the delivery never dies with an exception nobody retrieves."""

    async def deliver() -> bool:
        sender = WebhookSender(SECRET, timeout=2, retries=2, backoff=0.05)
        return await sender.deliver("job-crlf", "http://127.0.0.1:9/ok\r\nx-injected: 1", b"{}")

    with caplog.at_level(logging.INFO, logger="ltx2.webhooks"):
        assert asyncio.run(deliver()) is False
    [given_up] = [record for record in caplog.records if "given up" in record.getMessage()]
    assert given_up.request_id == "job-crlf" and "control character" in given_up.getMessage()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_escape_request_paths_and_redact_url_secrets(tmp_path, log_format):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY} url safety\n")
    signed_path = "/img.png?X-Amz-Signature=SIGSECRET2&X-Amz-Credential=CREDSECRET3"
    routes = {signed_path: (200, "image/png", make_png())}  # the image host sees the query too
    args = ("--model", SCRIPTED_MODEL, "--log-format", log_format, "--results-dir", str(tmp_path / "results"))
    args += ("--api-keys", str(keys), "--webhook-secret", SECRET)
    with image_host(routes) as host, receiver_on_loopback() as (receiver, hook):
        with cli_server(*args) as (base_url, _):
            authority = host.split("://", 1)[1]
            signed = f"http://alice:alice-pass-1@{authority}{signed_path}"
            webhook = f"http://hook:HOOKPASS5@{hook.split('://', 1)[1]}/ok?token=HOOKTOKEN6"
            done = post(base_url, image=signed, webhook=webhook).json()["request_id"]
            assert wait_final(base_url, done)["status"] == "COMPLETED"
            wait_for(lambda: receiver.for_job(done))
            assert verified(receiver.for_job(done)[0])["status"] == "COMPLETED"
            output = httpx.get(f"{base_url}/v2/requests/{done}", headers={"x-api-key": KEY}).json()["output"]
            assert httpx.get(output, timeout=30).status_code == 200
            token = output.split("/")[-2]

            missing = f"http://bob:alice-pass-1@{authority}/missing.png?token=TOKSECRET4&sig=SIGSECRET2"
            failed = post(base_url, image=missing).json()["request_id"]
            status = wait_final(base_url, failed)
            assert status["status"] == "FAILED" and "HTTP 404" in status["error"]
            assert "***" in status["error"] and not any(secret in status["error"] for secret in SECRETS)
            refused = post(base_url, webhook="ftp://carol:HOOKPASS5@example.com/x?token=HOOKTOKEN6")
            assert refused.status_code == 400 and not any(secret in refused.text for secret in SECRETS)

            forged = "2099-01-01 00:00:00,000 WARNING ltx2.http: FORGED"
            encoded = forged.replace(" ", "%20").replace(",", "%2C").replace(":", "%3A")
            response = httpx.get(f"{base_url}/v2/requests/x%0D%0A{encoded}%1B[31m/status", headers={"x-api-key": KEY})
            assert response.status_code == 404
            time.sleep(0.5)
        text = log_path(base_url).read_text()

    assert "Task exception was never retrieved" not in text
    leaked = [secret for secret in (*SECRETS, token) if secret in text]
    assert not leaked, leaked
    lines = text.splitlines()
    if log_format == "text":
        assert not any(line.startswith("2099-01-01") for line in lines)
        [access] = [line for line in lines if "FORGED" in line]
        assert "/v2/requests/x\\r\\n2099-01-01 00:00:00,000 WARNING ltx2.http: FORGED\\x1b[31m/status 404" in access
        assert f"/outputs/{done}/***/{done}.mp4 200" in text
    else:
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) == len([line for line in lines if line.strip()])  # every line is one JSON object
        [access] = [record for record in records if "FORGED" in record.get("path", "")]
        assert access["path"] == f"/v2/requests/x\r\n{forged}\x1b[31m/status" and access["http_status"] == 404
        paths = [record.get("path", "") for record in records]
        assert f"/outputs/{done}/***/{done}.mp4" in paths
        failures = [record for record in records if record.get("request_id") == failed and record.get("error")]
        assert failures and "***" in failures[0]["error"]


# ---- Redis store ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    require_redis_server()
    root = tmp_path_factory.mktemp("url-safety")
    keys = root / "keys.txt"
    keys.write_text(f"{KEY} url safety\n")
    extra = ("--api-keys", str(keys), "--webhook-secret", SECRET, "--webhook-retries", "1")
    extra += ("--webhook-backoff", "0.1")
    with Cluster(root, model=SCRIPTED_MODEL, extra=extra) as cluster:
        cluster.start_worker()
        cluster.start_api()
        cluster.wait_for_workers(1)
        yield cluster


@pytest.mark.e2e
def test_redis_control_characters_in_every_url_field_are_refused(redis_cluster):
    assert_control_characters_refused(redis_cluster.apis[0], "http://127.0.0.1:9")


@pytest.mark.e2e
def test_redis_a_non_ascii_download_token_is_a_404(redis_cluster):
    assert_non_ascii_tokens_are_404(redis_cluster.apis[0])


@pytest.mark.e2e
def test_redis_an_image_url_refused_at_submission_names_no_secret(redis_cluster):
    api = redis_cluster.apis[0]
    with image_host({}) as host:
        url = f"http://dave:alice-pass-1@{host.split('://', 1)[1]}/missing.png?X-Amz-Signature=SIGSECRET2"
        response = post(api, image=url)
    assert response.status_code == 400 and "HTTP 404" in response.json()["error"]
    assert "***" in response.json()["error"] and not any(secret in response.text for secret in SECRETS)
    time.sleep(0.3)
    assert not any(secret in log_path(api).read_text() for secret in SECRETS)


@pytest.mark.e2e
def test_redis_an_outbox_entry_no_request_can_carry_is_given_up_and_acknowledged(redis_cluster):
    """A webhook URL with CR/LF in a job record (written before submissions refused it): the outbox
    consumer logs the failed delivery with the request id, gives up, acknowledges the entry, and
    goes on delivering other jobs' webhooks."""
    api = redis_cluster.apis[0]
    redis = redis_cluster.redis.client()
    with receiver_on_loopback() as (receiver, url):
        hostile = post(api, prompt="scripted:steps", webhook=f"{url}/ok").json()["request_id"]
        redis.hset(f"ltx2:job:{hostile}", "webhook", f"{url}/ok\r\nx-injected: 1")
        assert wait_final(api, hostile)["status"] == "COMPLETED"
        wait_for(lambda: f"webhook for {hostile} given up" in log_path(api).read_text())
        wait_for(lambda: redis.xlen("ltx2:webhooks") == 0)
        assert not receiver.for_job(hostile)

        after = post(api, prompt="ok", webhook=f"{url}/ok").json()["request_id"]
        wait_for(lambda: receiver.for_job(after))
        assert verified(receiver.for_job(after)[0])["status"] == "COMPLETED"
    # Acknowledged once: not taken over and failed again later.
    pending = redis.xpending("ltx2:webhooks", "ltx2-api") if redis.exists("ltx2:webhooks") else None
    assert pending is None or pending["pending"] == 0
    text = log_path(api).read_text()
    assert text.count(f"webhook for {hostile} given up") == 1
    assert "control character" in text and "Task exception was never retrieved" not in text
