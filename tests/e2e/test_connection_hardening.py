"""Slow clients, the Host header, and who may read the results on disk: through real servers and sockets."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from server.api.app import create_app
from server.api.http_timeouts import timed_protocol_class
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, SLUG, payload, submit, wait_final
from tests.support.servers import REPO_ROOT, cli_server, free_port, png_data_uri, thread_server

# ---- slow clients -------------------------------------------------------------------------------


def exchange(port: int, first: bytes, trickle: bytes = b"", every: float = 0.2, give_up: float = 15.0):
    """Send ``first``, then ``trickle`` every ``every`` seconds while nothing comes back; returns
    (seconds until the server closed the connection, everything it sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(every)
    started = time.monotonic()
    received = b""
    try:
        sock.sendall(first)
        while time.monotonic() - started < give_up:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                if trickle:
                    try:
                        sock.sendall(trickle)
                    except OSError:
                        break
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        else:
            raise AssertionError(f"the connection was still open after {give_up} s; got {received[:200]!r}")
        return time.monotonic() - started, received
    finally:
        sock.close()


SLOW_HEADERS = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a")
SLOW_BODY = (
    f"POST /v2/{SLUG} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Content-Length: 100000\r\n\r\n{".encode(),
    b" ",
)


def assert_408_within(elapsed: float, received: bytes, bound: float, what: str) -> None:
    assert bound - 0.1 <= elapsed <= bound + 2.0, elapsed
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert f'{{"error": "request {what} not received within {bound:g} s"}}'.encode() in received


@pytest.fixture(scope="module")
def slow_guarded():
    """``ltx2-server serve`` with a 1 s header and a 2 s body deadline; yields its port."""
    with cli_server("--model", SCRIPTED_MODEL, "--header-timeout", "1", "--body-timeout", "2") as (base_url, _):
        yield int(base_url.rsplit(":", 1)[1])


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(slow_guarded):
    assert_408_within(*exchange(slow_guarded, b""), 1, "headers")


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(slow_guarded):
    assert_408_within(*exchange(slow_guarded, *SLOW_HEADERS), 1, "headers")


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_body_timeout(slow_guarded):
    assert_408_within(*exchange(slow_guarded, *SLOW_BODY), 2, "body")


def test_prompt_clients_are_unaffected_and_a_kept_alive_connection_gets_a_fresh_deadline(slow_guarded):
    base_url = f"http://127.0.0.1:{slow_guarded}"
    with httpx.Client(timeout=30) as client:
        for _ in range(2):
            accepted = client.post(f"{base_url}/v2/{SLUG}", json=payload())
            assert accepted.status_code == 200, accepted.text
            time.sleep(1.5)  # longer than the header deadline, between requests on one connection
        assert wait_final(accepted.json()["status_url"]).json()["status"] == "COMPLETED"
    # A request whose body takes longer than the header deadline, but less than the body one, is served.
    request = f"POST /v2/{SLUG} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = httpx.Request("POST", "http://x", json=payload()).content
    sock = socket.create_connection(("127.0.0.1", slow_guarded))
    with sock:
        sock.sendall(f"{request}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        for index in range(0, len(body), max(1, len(body) // 6)):
            sock.sendall(body[index : index + max(1, len(body) // 6)])
            time.sleep(0.25)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


@contextmanager
def uvicorn_with(protocol: type):
    """A real uvicorn in a thread, serving a scripted app with the given HTTP protocol class."""
    port = free_port()
    app = create_app(Settings(model=SCRIPTED_MODEL))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=protocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.parametrize("implementation", ["h11", "httptools"])
def test_both_http_implementations_enforce_the_deadlines(implementation):
    with uvicorn_with(timed_protocol_class(1.0, 1.5, implementation)) as port:
        assert_408_within(*exchange(port, *SLOW_HEADERS), 1, "headers")
        assert_408_within(*exchange(port, *SLOW_BODY), 1.5, "body")
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200


def test_deadlines_must_be_positive():
    assert Settings(header_timeout=0).problems() == ["header-timeout: must be more than 0; got 0"]
    assert Settings(body_timeout=-1).problems() == ["body-timeout: must be more than 0; got -1"]


# ---- the Host header ------------------------------------------------------------------------------


def raw_submit(port: int, host: bytes) -> tuple[int, dict]:
    body = httpx.Request("POST", "http://x", json=payload()).content
    head = (
        f"POST /v2/{SLUG} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + b"Host: " + host + b"\r\n\r\n" + body)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    status = int(answer.split(b" ", 2)[1])
    import json

    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.fixture(scope="module")
def open_hosts():
    with thread_server(create_app(Settings(model=SCRIPTED_MODEL))) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "host,base",
    [
        (b"gpu.example.com", "http://gpu.example.com"),
        (b"gpu.example.com:8443", "http://gpu.example.com:8443"),
        (b"[::1]:9000", "http://[::1]:9000"),
        (b"10.0.0.7", "http://10.0.0.7"),
    ],
)
def test_a_well_formed_host_header_builds_the_absolute_urls(open_hosts, host, base):
    status, body = raw_submit(open_hosts, host)
    assert status == 200 and body["poll_url"].startswith(base + "/v1/requests/")


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example@gpu.example.com",
        b"gpu.example.com/phish?",
        b"gpu.example.com:99999",
        b"gpu.example.com:80:80",
        b"gpu.example.com%2fx",
        b"'><script>",
        b"a..b",
        b"[not-an-address]",
        b"gpu.example.com;x",
    ],
)
def test_a_malformed_host_header_falls_back_to_the_address_the_connection_came_in_on(open_hosts, host):
    status, body = raw_submit(open_hosts, host)
    assert status == 200, body
    assert body["poll_url"].startswith(f"http://127.0.0.1:{open_hosts}/v1/requests/"), body["poll_url"]
    for key in ("status_url", "response_url"):
        assert body[key].startswith(f"http://127.0.0.1:{open_hosts}/v2/requests/")


def test_allowed_hosts_refuses_every_other_host_with_a_json_400():
    settings = Settings(model=SCRIPTED_MODEL, allowed_hosts="gpu.example.com, *.internal.example, 127.0.0.1")
    with thread_server(create_app(settings)) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        for host in (b"gpu.example.com", b"a.internal.example:8000", f"127.0.0.1:{port}".encode(), b"GPU.Example.COM"):
            status, body = raw_submit(port, host)
            assert status == 200, (host, body)
        for host in (b"evil.example", b"internal.example", b"gpu.example.com.evil.example", b"a b"):
            status, body = raw_submit(port, host)
            assert status == 400 and "is not one this server answers to" in body["error"], (host, body)
        assert httpx.get(f"{base_url}/health", timeout=10).status_code == 200


def test_allowed_hosts_entries_are_checked_at_start_up():
    assert Settings(allowed_hosts="gpu.example.com,*.example.com,[::1],*").problems() == []
    problems = Settings(allowed_hosts="gpu.example.com:8000,http://x").problems()
    assert problems == [
        "allowed-hosts: 'gpu.example.com:8000' is not a host name (example.com, *.example.com, an IP address; "
        "no port)",
        "allowed-hosts: 'http://x' is not a host name (example.com, *.example.com, an IP address; no port)",
    ]


def test_forwarded_hosts_are_held_to_the_same_form():
    settings = Settings(model=SCRIPTED_MODEL, trust_forwarded_headers=True)
    with thread_server(create_app(settings)) as base_url:
        good = submit(base_url, payload(), headers={"x-forwarded-host": "api.example.com", "x-forwarded-proto": "https"})
        assert good.json()["poll_url"].startswith("https://api.example.com/v1/requests/")
        bad = submit(base_url, payload(), headers={"x-forwarded-host": "evil.example/x?"})
        assert bad.json()["poll_url"].startswith(base_url + "/v1/requests/")


# ---- modes of the results on disk ------------------------------------------------------------------


def modes_under(root: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"dirs": set(), "files": set()}
    for folder, dirs, files in os.walk(root):
        found["dirs"].add(stat.S_IMODE(os.stat(folder).st_mode))
        for name in files:
            found["files"].add(stat.S_IMODE(os.stat(Path(folder) / name).st_mode))
    return found


def run_one_job(base_url: str, **overrides) -> dict:
    accepted = submit(base_url, {**payload(), "image": png_data_uri(), **overrides})
    assert accepted.status_code == 200, accepted.text
    final = wait_final(accepted.json()["status_url"], timeout=300)
    assert final.json()["status"] == "COMPLETED", final.text
    return accepted.json()


@pytest.mark.parametrize(
    "flags,file_mode,dir_mode",
    [((), 0o600, 0o700), (("--results-group-readable",), 0o640, 0o750)],
)
def test_results_are_private_by_default_or_shared_with_the_group_when_asked(tmp_path, flags, file_mode, dir_mode):
    results = tmp_path / "results"  # the server makes it
    # The tiny model runs the real pipeline, whose mux writes the mp4 in the worker process.
    with cli_server("--model", "tiny", "--results-dir", str(results), *flags) as (base_url, _):
        job = run_one_job(base_url, width=256, height=256, num_frames=9, fps=8)
        job_dir = results / job["request_id"]
        assert any(job_dir.glob("*.mp4")) and any(job_dir.glob("input*"))
        assert modes_under(results) == {"dirs": {dir_mode}, "files": {file_mode}}


def test_results_modes_with_a_shared_store(tmp_path):
    """API replica and worker host are separate processes: both write with the same modes."""
    from tests.support.redis_server import redis_server, require_redis_server

    require_redis_server()
    results = tmp_path / "shared"
    with redis_server(tmp_path / "redis", persistence=False) as redis:
        common = ["--model", SCRIPTED_MODEL, "--store", redis.url, "--results-dir", str(results)]
        worker = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "worker", *common],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with cli_server(*common) as (base_url, _):
                run_one_job(base_url)
                assert modes_under(results) == {"dirs": {0o700}, "files": {0o600}}
        finally:
            worker.terminate()
            worker.wait(30)
