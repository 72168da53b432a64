"""Which addresses the server may connect to for image and webhook URLs.

The host is resolved here and every address checked; the connection then goes to those very addresses,
so a name that resolves differently a moment later (DNS rebinding) cannot slip past. They are tried in
happy-eyeballs order (RFC 8305: families interleaved, the resolver's first first), each with its own
connect timeout, so ``localhost`` as an unreachable ``::1`` still connects over IPv4. Cloud metadata and
link-local addresses are always refused; private and loopback ones with ``--block-private-image-urls``.
IPv6 forms carrying an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo, ISATAP) are refused when
the IPv4 address would be.
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
# RFC 8215's local-use NAT64 prefix: an operator's own translator, so a private address in itself;
# the IPv4 address is read from the low 32 bits (its common /96 use).
LOCAL_NAT64_PREFIX = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE_PREFIX = ipaddress.ip_network("::/96")
ISATAP_INTERFACE_IDS = (0x00005EFE, 0x02005EFE)
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
PINNED_ADDRESSES = "ltx2_pinned_addresses"  # the request extension PinnedTransport connects by


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host resolved to ``address``, an address we may connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str  # the first one to try
    addresses: tuple[str, ...] = ()  # every checked address, in the order to try them


def _translated(address: IPAddress) -> bool:
    """IPv6 forms that only stand for an IPv4 address (mapped, NAT64): judged by that address alone."""
    return isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in NAT64_PREFIX or address in LOCAL_NAT64_PREFIX
    )


def embedded_ipv4s(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries, where its packets may really go (none for IPv4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64_PREFIX or address in LOCAL_NAT64_PREFIX:
        return [low32]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo  # (the client's address is stored inverted; this undoes it)
        return [client, server]
    if address in IPV4_COMPATIBLE_PREFIX and int(address) > 1:  # (not :: or ::1)
        return [low32]
    if (int(address) >> 32) & 0xFFFFFFFF in ISATAP_INTERFACE_IDS:
        return [low32]
    return []


def refusal_reason(address: IPAddress, block_private: bool) -> str | None:
    """Why we must not connect to ``address``, or None; an IPv6 address carrying an IPv4 one is
    refused when that IPv4 address would be."""
    for carried in embedded_ipv4s(address):
        reason = _own_refusal_reason(carried, block_private)
        if reason:
            return reason
    if _translated(address):
        if block_private and address in LOCAL_NAT64_PREFIX:
            return "a private or loopback address (refused by --block-private-image-urls)"
        return None
    return _own_refusal_reason(address, block_private)


def _own_refusal_reason(address: IPAddress, block_private: bool) -> str | None:
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
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url(
    url: str, *, block_private: bool, timeout: float, resolver: Resolver | None = None, field: str = "image"
) -> CheckedTarget:
    """Resolve the URL's host and check every address (one policy for image and webhook URLs alike)."""
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
    # Every address must pass: a client cannot choose which one we would connect to, and each may be tried.
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        reason = refusal_reason(address, block_private)
        if reason:
            carried = embedded_ipv4s(address)
            via = f" (which carries {', '.join(map(str, carried))})" if carried else ""
            raise InvalidRequest(
                f"{field}: refused to connect to {url}: host {host} resolves to {address}{via}, {reason}"
            )
    ordered = tuple(happy_eyeballs_order(addresses))
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address=ordered[0], addresses=ordered)


def happy_eyeballs_order(addresses: list[str]) -> list[str]:
    """RFC 8305 section 4: the resolver's first address family first, then the families alternate
    (the resolver already sorted each family by RFC 6724's preference)."""
    if not addresses:
        return []
    first_is_v6 = ":" in addresses[0]
    preferred = [a for a in addresses if (":" in a) == first_is_v6]
    other = [a for a in addresses if (":" in a) != first_is_v6]
    ordered: list[str] = []
    for index in range(max(len(preferred), len(other))):
        ordered.extend(family[index] for family in (preferred, other) if index < len(family))
    return ordered


def pinned_request(target: CheckedTarget, method: str = "GET") -> dict:
    """httpx request arguments that connect to the checked address and still name the host (Host header,
    TLS SNI and certificate), so a name that resolves elsewhere a moment later changes nothing."""
    parsed = httpx.URL(target.url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:  # an IPv6 literal
        host_header = f"[{host_header}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    extensions: dict = {"sni_hostname": target.host} if target.scheme == "https" else {}
    extensions[PINNED_ADDRESSES] = target.addresses or (target.address,)
    return {
        "method": method,
        "url": parsed.copy_with(host=target.address.split("%", 1)[0]),
        "headers": {"Host": host_header},
        "extensions": extensions,
    }


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends a ``pinned_request`` to its checked addresses in turn, until one connects (each with the client's
    connect timeout; nothing is sent before). A request not from ``pinned_request`` is refused: this transport
    never connects to an address nobody checked."""

    def __init__(self, **transport_options) -> None:
        self._inner = httpx.AsyncHTTPTransport(**transport_options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = request.extensions.get(PINNED_ADDRESSES)
        if not addresses:
            raise httpx.ConnectError("refused: the request's address was not checked", request=request)
        failures: list[str] = []
        all_timeouts = True
        for address in addresses:
            request.url = request.url.copy_with(host=address.split("%", 1)[0])
            try:
                return await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                all_timeouts &= isinstance(exc, httpx.ConnectTimeout)
                failures.append(f"{address}: {exc or type(exc).__name__}")
        error = httpx.ConnectTimeout if all_timeouts else httpx.ConnectError
        raise error("no address connected (" + "; ".join(failures) + ")", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def pinned_client(*, limits: httpx.Limits | None = None, **client_options) -> httpx.AsyncClient:
    """An httpx client for ``pinned_request``s: no proxy from the environment (it would connect
    somewhere we did not check), no redirects followed (each hop must be checked first)."""
    transport = PinnedTransport(limits=limits) if limits is not None else PinnedTransport()
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, **client_options)
