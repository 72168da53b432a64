"""SIGTERM drains: new jobs get 503, the running job finishes (within the grace), queued ones fail
clearly, the temporary results directory is removed, and the process exits 0. SIGINT (Ctrl-C) drains
with no grace and exits 130; a second signal stops now, a third exits at once; none prints a traceback."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest

from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final, wait_for, wait_processing
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


def test_sigint_fails_the_running_and_queued_jobs_answers_their_callers_and_exits_fast(tmp_path, monkeypatch):
    # Ctrl-C is a drain with no grace: however long --shutdown-grace is, the jobs fail at once with the
    # reason, a waiting /v1 caller gets a 503 saying so, an event stream its final status, and the process
    # exits within seconds without a traceback.
    import json
    import time

    monkeypatch.setenv("LTX2_TEST_LOG_DIR", str(tmp_path))
    env = {"TMPDIR": str(tmp_path)}
    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "60", env=env) as (base_url, process):
        running = submit(base_url, payload("hang")).json()
        wait_processing(running["status_url"])
        queued = submit(base_url, payload()).json()
        answers: list[httpx.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{base_url}/v1/{SLUG}", json=payload(), timeout=60))
        )
        caller.start()
        events: list[dict] = []

        def listen() -> None:
            with httpx.stream("GET", f"{base_url}/v2/requests/{running['request_id']}/events", timeout=60) as stream:
                events.extend(json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: "))

        listener = threading.Thread(target=listen)
        listener.start()
        time.sleep(1.0)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        dropped = wait_final(queued["status_url"], timeout=10)
        assert dropped.status_code == 422
        assert (
            dropped.json()["error"]
            == "the server was interrupted (SIGINT): this job never started; submit it again later"
        )
        assert process.wait(15) == 130  # 128 + SIGINT, as a shell reports a Ctrl-C
        elapsed = time.monotonic() - started
        caller.join(10)
        listener.join(10)
    assert elapsed < 10, elapsed
    # The /v1 caller's job was queued behind the running one: it never started.
    assert answers[0].status_code == 503
    assert answers[0].json()["error"].startswith("the server was interrupted (SIGINT): this job never started")
    final = events[-1]
    assert final["status"] == "FAILED"
    assert (
        final["error"]
        == "the server was interrupted (SIGINT): this job was stopped before it finished; submit it again later"
    )
    log = (tmp_path / f"ltx2-server-{base_url.rsplit(':', 1)[1]}.log").read_text()
    assert "interrupted (SIGINT)" in log and "Traceback" not in log
    assert list(tmp_path.glob("ltx2-results-*")) == []


def test_a_second_signal_while_draining_exits_at_once(tmp_path, monkeypatch):
    # SIGTERM would wait up to 60 s for the running job; Ctrl-C then stops at once, a waiting /v1 caller
    # notwithstanding.
    import time

    monkeypatch.setenv("LTX2_TEST_LOG_DIR", str(tmp_path))
    env = {"TMPDIR": str(tmp_path)}
    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "60", env=env) as (base_url, process):
        answers: list[httpx.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{base_url}/v1/{SLUG}", json=payload("hang"), timeout=60)),
            daemon=True,
        )
        caller.start()
        wait_for_status(base_url, 200, path="/ready", check=lambda r: r.json()["worker"] == "busy")
        process.send_signal(signal.SIGTERM)
        wait_for_status(base_url, 503, path="/ready")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 130  # the stop was a Ctrl-C, whatever signal came first
        assert time.monotonic() - started < 8
        caller.join(10)
    assert answers[0].status_code == 503
    assert answers[0].json()["error"].startswith("the server was interrupted (SIGINT)")
    log = (tmp_path / f"ltx2-server-{base_url.rsplit(':', 1)[1]}.log").read_text()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("interrupts", [1, 2, 3])
def test_ctrl_c_pressed_quickly_exits_130_without_a_traceback(tmp_path, monkeypatch, interrupts):
    # With a job running and a /v1 caller waiting, one, two or three Ctrl-C in quick succession: each
    # stops harder (drain, stop now, exit at once), and none lets uvicorn's forced exit print
    # CancelledError traces. The worker child goes with the server, the temporary results too.
    import time

    monkeypatch.setenv("LTX2_TEST_LOG_DIR", str(tmp_path))
    env = {"TMPDIR": str(tmp_path)}
    with cli_server("--model", SCRIPTED_MODEL, "--shutdown-grace", "60", env=env) as (base_url, process):
        threading.Thread(
            target=lambda: httpx.post(f"{base_url}/v1/{SLUG}", json=payload("hang"), timeout=60), daemon=True
        ).start()
        ready = wait_for_status(base_url, 200, path="/ready", check=lambda r: r.json()["worker"] == "busy")
        worker_pid = ready.json()["worker_pid"]
        started = time.monotonic()
        for _ in range(interrupts):
            process.send_signal(signal.SIGINT)
            time.sleep(0.1)  # apart enough for the handler to see each one (signals do not queue)
        assert process.wait(15) == 130
        assert time.monotonic() - started < 8
        wait_for(lambda: not process_exists(worker_pid), timeout=10)
    log = (tmp_path / f"ltx2-server-{base_url.rsplit(':', 1)[1]}.log").read_text()
    assert "Traceback" not in log and "CancelledError" not in log, log
    if interrupts == 3:
        assert "signal 3 received: exiting at once (status 130)" in log, log
    assert list(tmp_path.glob("ltx2-results-*")) == []


def process_exists(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_ctrl_c_while_serve_is_still_starting_exits_130_in_one_line(delay):
    """Before the worker and uvicorn are up (parsing, checks, imports, start-up): no traceback either."""
    import subprocess
    import sys
    import time

    from tests.support.servers import REPO_ROOT, free_port

    command = [sys.executable, "-m", "server.cli", "serve", "--model", "tiny", "--port", str(free_port())]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
