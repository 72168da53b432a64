"""A /v1 caller that goes away (closes its connection mid-wait) cancels its job through the normal cancel
path: a running job stops at its next step, a queued one never runs, and the worker takes the next job."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final, wait_for, wait_processing
from tests.support.servers import cli_server


def server_log(base_url: str, tmp_path: Path) -> str:
    port = base_url.rsplit(":", 1)[1]
    return (tmp_path / f"ltx2-server-{port}.log").read_text(errors="replace")


def call_v1_and_hang_up(base_url: str, prompt: str, after: float) -> None:
    """POST /v1, then give up after `after` seconds: httpx closes the connection on the read timeout."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/{SLUG}", json=payload(prompt), timeout=httpx.Timeout(30, read=after))


def job_ids(log: str, change: str) -> list[str]:
    return re.findall(rf"job (\S+) {change}\b", log)


def test_a_running_v1_job_is_cancelled_when_its_caller_hangs_up_and_the_worker_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("LTX2_TEST_LOG_DIR", str(tmp_path))
    with cli_server("--model", SCRIPTED_MODEL) as (base_url, _process):
        call_v1_and_hang_up(base_url, "steps", after=2.0)
        job_id = wait_for(lambda: job_ids(server_log(base_url, tmp_path), "started"))[0]
        status = wait_final(f"{base_url}/v2/requests/{job_id}/status", timeout=30).json()
        assert status["status"] == "FAILED" and status["error"] == "cancelled", status
        # Stopped between steps, well before its 100 steps were done.
        assert status["stage"] != "completed" and status["progress"] < 0.7
        log = server_log(base_url, tmp_path)
        assert re.search(rf"job {job_id} cancelled: the /v1 caller closed its connection", log), log
        assert "Traceback" not in log

        # The worker takes the next job.
        following = submit(base_url, payload()).json()
        assert wait_final(following["status_url"]).json()["status"] == "COMPLETED"


def test_a_queued_v1_job_never_runs_when_its_caller_hangs_up(tmp_path, monkeypatch):
    monkeypatch.setenv("LTX2_TEST_LOG_DIR", str(tmp_path))
    with cli_server("--model", SCRIPTED_MODEL) as (base_url, _process):
        running = submit(base_url, payload("steps")).json()
        wait_processing(running["status_url"])
        call_v1_and_hang_up(base_url, "a calm lake", after=1.0)
        queued_id = wait_for(
            lambda: [i for i in job_ids(server_log(base_url, tmp_path), "queued") if i != running["request_id"]]
        )[0]
        status = wait_final(f"{base_url}/v2/requests/{queued_id}/status", timeout=10).json()
        assert status["status"] == "FAILED" and status["error"] == "cancelled", status
        # The running job was not disturbed, and the cancelled one never started.
        assert wait_final(running["status_url"]).json()["status"] == "COMPLETED"
        assert queued_id not in job_ids(server_log(base_url, tmp_path), "started")
