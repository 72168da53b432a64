"""Which addresses the server may fetch image URLs from.

The host is resolved here and the address checked; the fetch then connects to that very address
(see ``images.fetch_image_url``), so a name that resolves differently a moment later (DNS
rebinding) cannot slip past. Cloud metadata and link-local addresses are always refused; private and
loopback ones only with ``--block-private-image-urls`` (on-prem clients often host images nearby).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from server.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = ("http", "https")
# Metadata services outside the link-local range (AWS's IPv6 one, Alibaba's, Oracle's).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192", "169.254.170.2")
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host resolved to ``address``, an address we may connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 one, where the packets really go."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64_PREFIX:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refusal_reason(address: IPAddress, block_private: bool) -> str | None:
    """Why we must not connect to ``address``, or None."""
    address = embedded_ipv4(address)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    private = address.is_loopback or address.is_private or address in SHARED_ADDRESS_SPACE
    if address.is_unspecified or address.is_multicast or (address.is_reserved and not address.is_loopback):
        return "not a unicast address"  # (0.0.0.0 reaches this host; ::1 sits in a reserved block)
    if block_private and private:
        return "a private or loopback address (refused by --block-private-image-urls)"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


async def check_url(
    url: str, *, block_private: bool, timeout: float, resolver: Resolver | None = None, field: str = "image"
) -> CheckedTarget:
    """Resolve the URL's host and check every address it has; InvalidRequest names the field and reason.

    Used for image URLs and webhook URLs alike: one policy for every connection a client can point us at.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise InvalidRequest(f"{field}: {url!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidRequest(f"{field}: URL scheme {scheme!r} is not allowed (use http or https)")
    host = parts.hostname
    if not host:
        raise InvalidRequest(f"{field}: {url!r} has no host")
    try:
        addresses = await asyncio.wait_for((resolver or system_resolver)(host, port), timeout)
    except asyncio.TimeoutError:
        raise InvalidRequest(f"{field}: resolving {host} timed out after {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(f"{field}: cannot resolve host {host} ({exc})") from None
    if not addresses:
        raise InvalidRequest(f"{field}: host {host} has no address")
    # Every address must pass: a client cannot choose which one we would connect to.
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = refusal_reason(address, block_private)
        if reason:
            raise InvalidRequest(f"{field}: refused to connect to {url}: host {host} resolves to {address}, {reason}")
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def pinned_request(target: CheckedTarget, method: str = "GET") -> dict:
    """httpx request arguments that connect to the checked address and still name the host (Host header,
    TLS SNI and certificate), so a name that resolves elsewhere a moment later changes nothing."""
    parsed = httpx.URL(target.url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:  # an IPv6 literal
        host_header = f"[{host_header}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return {
        "method": method,
        "url": parsed.copy_with(host=target.address.split("%", 1)[0]),
        "headers": {"Host": host_header},
        "extensions": extensions,
    }
