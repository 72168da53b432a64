"""What ``ltx2-server serve`` says at start-up: the tiny test model is announced as such (a WARNING line and
/ready's test_model), and a port already taken is one clear line before any worker is spawned."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.support.servers import REPO_ROOT, free_port, wait_until_ready

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def serve(*args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, text=True, **kwargs)


def test_auto_without_weights_warns_that_it_serves_the_tiny_test_model(tmp_path):
    port = free_port()
    weights = tmp_path / "weights"
    weights.mkdir()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = serve("--port", str(port), "--model", "auto", "--weights", str(weights), stdout=out, stderr=out)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", 180, process)
            ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
        finally:
            process.terminate()
            process.wait(30)
    assert ready["test_model"] is True
    warnings = [line for line in log.read_text().splitlines() if "tiny test model" in line]
    assert len(warnings) == 1, log.read_text()
    assert "WARNING" in warnings[0] and "random noise" in warnings[0]
    assert f"put LTX-2 weights in {weights} or pass --weights DIR" in warnings[0]


def test_ready_says_test_model_false_for_another_model(scripted_server):
    assert httpx.get(f"{scripted_server}/ready").json()["test_model"] is False


def test_a_busy_port_is_one_clear_line_and_no_worker_is_spawned():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        process = serve("--port", str(port), "--model", "tiny", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert err.strip() == f"ltx2-server: port {port} is in use: another ltx2-server? use --port"
    assert out == ""  # no log line at all: nothing was started, no worker spawned
    assert time.monotonic() - started < 30
