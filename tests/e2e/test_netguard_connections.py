"""Outbound connections for real: each checked address tried in happy-eyeballs order until one connects, to
a service listening on one address family only, directly and through a real server (the address checks
themselves are in tests/unit/test_netguard.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from server.api.app import create_app
from server.jobs.netguard import (
    check_url,
    pinned_client,
    pinned_request,
)
from server.settings import Settings
from tests.support.api import SCRIPTED_MODEL, payload, submit, wait_final
from tests.support.servers import make_png, thread_server

# ---- real connections: a service on one address family only ---------------------------------


class _Handler(BaseHTTPRequestHandler):
    png = make_png()
    seen: list[tuple[str, str, bytes]] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self.rfile.read(int(self.headers["content-length"])))

    def _answer(self, body: bytes) -> None:
        self.seen.append((self.command, self.headers["host"], body))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def single_stack_host(family: socket.AddressFamily):
    """An HTTP server listening on one loopback address only (127.0.0.1 or ::1); yields (port, seen)."""
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    handler = type("Handler", (_Handler,), {"seen": []})
    httpd = server_class(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _nothing_listens(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        return probe.connect_ex((address, port)) != 0


def test_a_post_reaches_a_service_on_the_second_address_with_its_body_and_host():
    """The webhook path: a POST whose first address refuses the connection is sent to the next one."""
    with single_stack_host(socket.AF_INET6) as (port, seen):
        assert _nothing_listens("127.0.0.1", port)

        async def dual(host: str, port: int) -> list[str]:
            return ["127.0.0.1", "::1"]

        async def post() -> httpx.Response:
            target = await check_url(f"http://hooks.test:{port}/hook", block_private=False, timeout=5, resolver=dual)
            async with pinned_client(timeout=5) as client:
                return await client.request(**pinned_request(target, "POST"), content=b'{"status":"COMPLETED"}')

        assert asyncio.run(post()).status_code == 200
        assert seen == [("POST", f"hooks.test:{port}", b'{"status":"COMPLETED"}')]


def test_when_no_address_connects_every_attempt_is_named():
    with single_stack_host(socket.AF_INET) as (port, _):
        pass  # closed again: nothing listens on the port now

    async def dual(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]

    async def get() -> None:
        target = await check_url(f"http://gone.test:{port}/", block_private=False, timeout=5, resolver=dual)
        async with pinned_client(timeout=5) as client:
            await client.request(**pinned_request(target))

    with pytest.raises(httpx.ConnectError, match=r"::1: .*; 127\.0\.0\.1: "):
        asyncio.run(get())


def test_the_pinned_client_refuses_a_request_whose_address_was_not_checked():
    async def get() -> None:
        async with pinned_client(timeout=5) as client:
            await client.get("http://127.0.0.1:9/")

    with pytest.raises(httpx.ConnectError, match="was not checked"):
        asyncio.run(get())


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    app = create_app(Settings(model=SCRIPTED_MODEL, results_dir=str(tmp_path_factory.mktemp("r"))))
    with thread_server(app) as base_url:
        yield base_url, app


@pytest.mark.parametrize(
    "listening,resolved",
    [
        (socket.AF_INET, ["::1", "127.0.0.1"]),  # localhost as ::1 first, the image host IPv4-only
        (socket.AF_INET6, ["127.0.0.1", "::1"]),  # the other way round
    ],
)
def test_an_image_host_listening_on_one_family_is_fetched_whichever_address_comes_first(guarded, listening, resolved):
    base_url, app = guarded

    async def resolver(host: str, port: int) -> list[str]:
        return list(resolved)

    app.state.service.intake.resolver = resolver
    try:
        with single_stack_host(listening) as (port, seen):
            assert _nothing_listens(resolved[0], port)
            job = submit(base_url, {**payload(), "image": f"http://dual.test:{port}/a.png"})
            assert job.status_code == 200, job.text
            final = wait_final(job.json()["status_url"])
            assert final.json()["status"] == "COMPLETED", final.text
            assert [(method, host) for method, host, _ in seen] == [("GET", f"dual.test:{port}")]
    finally:
        app.state.service.intake.resolver = None
