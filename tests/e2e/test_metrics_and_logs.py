"""/metrics against the jobs actually run, and JSON log lines from a real ltx2-server process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, scrape
from tests.support.servers import cli_server, png_data_uri, thread_server

SLUG = "ltx-2-19b-i2v"


def submit(base_url: str, prompt: str, **extra) -> str:
    body = {"image": png_data_uri(), "prompt": prompt, "width": 256, "height": 256, "num_frames": 9, "fps": 8}
    response = httpx.post(f"{base_url}/v2/{SLUG}", json={**body, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["request_id"]


def wait_final(base_url: str, request_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{base_url}/v2/requests/{request_id}/status", timeout=10).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.05)
    raise TimeoutError(request_id)


def test_metrics_parse_and_count_the_jobs_run(tmp_path):
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path)))
    with thread_server(app) as base_url:
        before = scrape(base_url)
        assert before["ltx2_jobs_submitted_total"] == 0 and before["ltx2_queue_depth"] == 0
        assert before["ltx2_worker_ready"] == 1 and before["ltx2_worker_restarts_total"] == 0
        ids = [submit(base_url, "ok one"), submit(base_url, "ok two"), submit(base_url, "fail three")]
        queued_now = scrape(base_url)["ltx2_queue_depth"]
        assert 0 <= queued_now <= 3
        for request_id in ids:
            wait_final(base_url, request_id)
        crashed = submit(base_url, "crash please")
        assert wait_final(base_url, crashed)["status"] == "FAILED"
        deadline = time.monotonic() + 60
        while httpx.get(f"{base_url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)

        after = scrape(base_url)
        assert after["ltx2_jobs_submitted_total"] == 4
        assert after["ltx2_jobs_finished_total{state=completed}"] == 2
        assert after["ltx2_jobs_finished_total{state=failed}"] == 2
        assert after["ltx2_job_queue_seconds_count"] == 4
        assert after["ltx2_job_generation_seconds_count"] == 4
        assert after["ltx2_job_generation_seconds_bucket{le=+Inf}"] == 4
        assert after["ltx2_job_generation_seconds_sum"] > 0
        assert after["ltx2_queue_depth"] == 0 and after["ltx2_jobs_processing"] == 0
        assert after["ltx2_worker_restarts_total"] == 1
        assert "ltx2_gpu_peak_memory_bytes" not in after  # no CUDA here


def test_json_logs_one_line_per_request_and_per_transition_with_the_request_id(tmp_path):
    with cli_server("--model", SCRIPTED_MODEL, "--log-format", "json", "--results-dir", str(tmp_path)) as (
        base_url,
        process,
    ):
        request_id = submit(base_url, "ok")
        assert wait_final(base_url, request_id)["status"] == "COMPLETED"
        failed = submit(base_url, "fail")
        wait_final(base_url, failed)
        port = base_url.rsplit(":", 1)[1]
        time.sleep(0.3)
    log_text = (Path(os.environ.get("LTX2_TEST_LOG_DIR", "/tmp")) / f"ltx2-server-{port}.log").read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    transitions = [line for line in lines if line.get("request_id") == request_id and line["logger"] == "ltx2.jobs"]
    assert [line["event"] for line in transitions] == ["queued", "started", "completed"]
    assert transitions[-1]["generation_seconds"] >= 0 and transitions[-1]["status"] == "COMPLETED"
    requests = [line for line in lines if line.get("event") == "http_request"]
    submitted = [line for line in requests if line["method"] == "POST" and line.get("request_id") == request_id]
    assert len(submitted) == 1 and submitted[0]["http_status"] == 200 and submitted[0]["path"] == f"/v2/{SLUG}"
    polls = [line for line in requests if line["path"] == f"/v2/requests/{request_id}/status"]
    assert polls and all(line["request_id"] == request_id for line in polls)
    failure = [line for line in lines if line.get("request_id") == failed and line.get("event") == "failed"]
    assert failure and failure[0]["level"] == "warning" and "scripted failure" in failure[0]["error"]
