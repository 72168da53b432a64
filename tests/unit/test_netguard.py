"""Outbound connections (image and webhook URLs): every address checked, embedded IPv4 forms judged by
the address they carry, and the happy-eyeballs order of the checked addresses. Real connections (a service
on one address family, through a real server) are in tests/e2e/test_netguard_connections.py."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from server.jobs.netguard import (
    check_url,
    embedded_ipv4s,
    happy_eyeballs_order,
    refusal_reason,
)

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
