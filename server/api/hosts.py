"""The Host header: which ones the server answers to (``--allowed-hosts``: others get 400 before any
route runs), and when absolute URLs may be built from it: without ``--public-url``, only from a
well-formed ``host[:port]`` (a DNS name, an IPv4 address or a bracketed IPv6 one; a port from 1 to
65535). Anything else (user info, ``%``, quotes, spaces) gives way to the address the connection came in on.
"""

from __future__ import annotations

import ipaddress
import json
import re

from starlette.requests import Request

_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a well-formed Host value (host lower-cased, IPv6 without brackets), else None."""
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        return None
    if match["ipv6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ipv6"])), port
        except ValueError:
            return None
    name = match["name"].lower()
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return name, port


def allowed_host_pattern_problem(pattern: str) -> str | None:
    """Why an ``--allowed-hosts`` entry is unusable, or None."""
    name = pattern[2:] if pattern.startswith("*.") else pattern
    parts = split_host(name)
    if pattern == "*" or (parts is not None and parts[1] is None):
        return None
    return f"{pattern!r} is not a host name (example.com, *.example.com, an IP address; no port)"


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.rstrip(".")
    for pattern in patterns:
        if pattern == "*" or host == pattern.strip("[]").rstrip("."):
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:].rstrip(".")):
            return True
    return False


def request_base_url(request: Request) -> str:
    """From the Host header when it is well formed, else from the address the connection came in on."""
    host = request.headers.get("host")
    if host is None or split_host(host) is not None:
        return str(request.base_url).rstrip("/")
    scope = dict(request.scope)
    scope["headers"] = [(name, value) for name, value in request.scope["headers"] if name != b"host"]
    return str(Request(scope).base_url).rstrip("/")


class AllowedHostsMiddleware:
    """400 ``{"error"}`` for a request whose Host header is missing, malformed, or not allowed."""

    def __init__(self, app, patterns: tuple[str, ...]) -> None:
        self.app = app
        self.patterns = patterns

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.patterns:
            await self.app(scope, receive, send)
            return
        value = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        parsed = split_host(value)
        if parsed is not None and host_allowed(parsed[0], self.patterns):
            await self.app(scope, receive, send)
            return
        shown = value if parsed is not None else "missing or malformed"
        body = json.dumps({"error": f"Host header ({shown}) is not one this server answers to"}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
