"""Outbound connections (image and webhook URLs): every address checked, embedded IPv4 forms judged by
the address they carry, and each checked address tried in happy-eyeballs order until one connects."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from server.app import create_app
from server.netguard import (
    check_url,
    embedded_ipv4s,
    happy_eyeballs_order,
    pinned_client,
    pinned_request,
    refusal_reason,
)
from server.settings import Settings
from tests.conftest import SCRIPTED_MODEL
from tests.servers import make_png, thread_server
from tests.test_api_contract import payload, submit, wait_final

PRIVATE = "a private or loopback address (refused by --block-private-image-urls)"


@pytest.mark.parametrize(
    "address,carried",
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped
        ("::10.0.0.1", "10.0.0.1"),  # IPv4-compatible
        ("64:ff9b::a00:1", "10.0.0.1"),  # NAT64 (RFC 6052 well-known prefix)
        ("64:ff9b:1::a00:1", "10.0.0.1"),  # NAT64 local-use prefix (RFC 8215)
        ("2002:a00:1::1", "10.0.0.1"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo: client address stored inverted
        ("2a00:1450::5efe:10.0.0.1", "10.0.0.1"),  # ISATAP interface id
        ("2a00:1450::200:5efe:10.0.0.1", "10.0.0.1"),
    ],
)
def test_ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_address(address, carried):
    parsed = ipaddress.ip_address(address)
    assert ipaddress.ip_address(carried) in embedded_ipv4s(parsed)
    assert refusal_reason(parsed, block_private=True) == PRIVATE


@pytest.mark.parametrize(
    "address,reason",
    [
        ("2002:7f00:1::", PRIVATE),  # 6to4 of 127.0.0.1
        ("2002:c0a8:1::1", PRIVATE),  # 6to4 of 192.168.0.1
        ("2002:a9fe:a9fe::", "a cloud metadata address"),
        ("2002:a9fe:101::", "a link-local address"),
        ("2002:e000:1::", "not a unicast address"),  # 6to4 of multicast 224.0.0.1
        ("::a9fe:a9fe", "a cloud metadata address"),
        ("64:ff9b:1::a9fe:a9fe", "a cloud metadata address"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "a cloud metadata address"),  # Teredo client 169.254.169.254
        ("2a00:1450::5efe:169.254.169.254", "a cloud metadata address"),
    ],
)
def test_embedded_forms_of_refused_ipv4_addresses_are_refused(address, reason):
    assert refusal_reason(ipaddress.ip_address(address), block_private=True) == reason


@pytest.mark.parametrize(
    "address", ["2002:a9fe:a9fe::", "64:ff9b::a9fe:a9fe", "::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:5601:5601"]
)
def test_embedded_metadata_addresses_are_refused_even_when_private_ones_are_allowed(address):
    assert refusal_reason(ipaddress.ip_address(address), block_private=False) == "a cloud metadata address"


@pytest.mark.parametrize(
    "address",
    ["2002:5db8:d822::1", "64:ff9b::5db8:d822", "::ffff:93.184.216.34", "2a00:1450:4001:80b::200e"],
)
def test_embedded_public_addresses_pass(address):
    assert refusal_reason(ipaddress.ip_address(address), block_private=True) is None


def test_private_embedded_forms_pass_when_private_addresses_are_allowed():
    for address in ("2002:a00:1::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2a00:1450::5efe:10.0.0.1"):
        assert refusal_reason(ipaddress.ip_address(address), block_private=False) is None


def test_the_refusal_names_the_carried_address():
    async def six_to_four(host: str, port: int) -> list[str]:
        return ["2002:7f00:1::"]

    with pytest.raises(Exception, match=r"resolves to 2002:7f00:1:: \(which carries 127\.0\.0\.1\), a private"):
        asyncio.run(check_url("http://tunnel.test/a.png", block_private=True, timeout=5, resolver=six_to_four))


@pytest.mark.parametrize(
    "resolved,order",
    [
        (["::1", "127.0.0.1"], ["::1", "127.0.0.1"]),
        (["127.0.0.1", "::1"], ["127.0.0.1", "::1"]),
        (
            ["2001:db8::1", "2001:db8::2", "2001:db8::3", "192.0.2.1"],
            ["2001:db8::1", "192.0.2.1", "2001:db8::2", "2001:db8::3"],
        ),
        (
            ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"],
            ["192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"],
        ),
        (["192.0.2.1"], ["192.0.2.1"]),
    ],
)
def test_happy_eyeballs_order_interleaves_the_families_first_family_first(resolved, order):
    assert happy_eyeballs_order(resolved) == order


def test_every_address_is_kept_in_order_and_every_one_is_checked():
    async def dual(host: str, port: int) -> list[str]:
        return ["2001:db8::1", "2001:db8::2", "192.0.2.1"]

    target = asyncio.run(check_url("http://dual.test/a.png", block_private=False, timeout=5, resolver=dual))
    assert target.addresses == ("2001:db8::1", "192.0.2.1", "2001:db8::2") and target.address == "2001:db8::1"

    async def one_bad(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1", "169.254.169.254"]

    with pytest.raises(Exception, match="169.254.169.254, a cloud metadata address"):
        asyncio.run(check_url("http://dual.test/a.png", block_private=False, timeout=5, resolver=one_bad))


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
def test_an_image_host_listening_on_one_family_is_fetched_whichever_address_comes_first(
    guarded, listening, resolved
):
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
