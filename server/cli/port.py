"""Is the listening port free? Checked before ``serve`` starts anything (a worker loading a model for a
minute, only for uvicorn to fail on the bind afterwards, would be a slow way to say the port is taken)."""

from __future__ import annotations

import errno
import socket


def port_in_use(host: str, port: int) -> bool:
    """True when binding (host, port) the way uvicorn does (SO_REUSEADDR) fails because it is taken.
    Other failures (a host this machine does not have) are left for the server to report."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                return exc.errno == errno.EADDRINUSE
    return False
