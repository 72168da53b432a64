"""SIGTERM drains: new jobs get 503, the running job finishes (within the grace), queued ones fail
clearly, the temporary results directory is removed, and the process exits 0."""

from __future__ import annotations

import signal
import threading

import httpx

from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final, wait_processing
from tests.support.servers import cli_server


def test_sigterm_finishes_the_running_job_fails_the_queue_and_exits_0(tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "60", env=env) as (base_url, process):
        assert len(list(tmp_path.glob("ltx2-results-*"))) == 1
        running = submit(base_url, payload("steps")).json()
        wait_processing(running["status_url"])
        queued = submit(base_url, payload()).json()

        process.send_signal(signal.SIGTERM)
        refused = wait_for_status(base_url, 503)
        assert refused.json()["error"] == "the server is shutting down and accepts no new jobs"
        ready = httpx.get(f"{base_url}/ready")
        assert ready.status_code == 503 and ready.json()["draining"] is True
        dropped = httpx.get(queued["status_url"])
        assert dropped.status_code == 422 and "shutting down: this job never started" in dropped.json()["error"]
        # The listener stays open while draining, so the running job can still be polled to its end.
        assert wait_final(running["status_url"]).json()["status"] == "COMPLETED"
        assert process.wait(30) == 0
    assert list(tmp_path.glob("ltx2-results-*")) == []


def test_a_job_running_past_the_grace_fails_and_its_v1_caller_gets_503(tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "1", env=env) as (base_url, process):
        answers: list[httpx.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{base_url}/v1/{SLUG}", json=payload("hang"), timeout=60))
        )
        caller.start()
        wait_for_status(base_url, 200, path="/ready", check=lambda r: r.json()["worker"] == "busy")
        process.send_signal(signal.SIGTERM)
        caller.join(30)
        assert process.wait(30) == 0
    assert answers[0].status_code == 503
    assert "did not finish within the 1 s grace period" in answers[0].json()["error"]
    assert list(tmp_path.glob("ltx2-results-*")) == []


def wait_for_status(base_url: str, code: int, path: str | None = None, check=lambda r: True) -> httpx.Response:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path:
            response = httpx.get(base_url + path)
        else:
            response = submit(base_url, payload())
        if response.status_code == code and check(response):
            return response
        time.sleep(0.05)
    raise TimeoutError


def test_an_open_event_stream_does_not_hold_up_an_interrupt(tmp_path):
    # SIGTERM drains (the job ends, so does its stream); SIGINT stops at once, streams still open.
    import time

    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "1") as (base_url, process):
        job = submit(base_url, payload("hang")).json()
        wait_processing(job["status_url"])
        lines: list[str] = []

        def listen() -> None:
            with httpx.stream("GET", f"{base_url}/v2/requests/{job['request_id']}/events", timeout=60) as stream:
                lines.extend(stream.iter_lines())

        listener = threading.Thread(target=listen)
        listener.start()
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(30)
        # Without closing the streams first, uvicorn waits its full 30 s graceful period for them.
        assert time.monotonic() - started < 15
        listener.join(10)
        assert any(line.startswith("event: status") for line in lines)
