"""Per-connection deadlines on uvicorn's own HTTP protocol classes, so slow clients (slowloris) cannot hold
connections forever: uvicorn bounds only the idle time between kept-alive requests. A request's headers
must arrive within ``header_timeout`` seconds of its first byte (of the connection being opened, for its
first request), its body within ``body_timeout`` seconds of the end of its headers. Past either, the
client gets 408 (a JSON ``{"error"}`` body) when no response has started, and the connection is closed.
The deadlines stop while the application answers: a long /v1 call or an event stream goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the mixins run on top of these, put together by timed_protocol_class
    from uvicorn.protocols.http.h11_impl import H11Protocol as _H11Base
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsBase

    _ProtocolBase = asyncio.Protocol
else:
    _H11Base = _HttpToolsBase = _ProtocolBase = object

log = logging.getLogger("ltx2.http")


def timed_protocol_class(header_timeout: float, body_timeout: float, implementation: str = "auto") -> type:
    """uvicorn's HTTP protocol class with both deadlines: ``auto`` (httptools if installed), ``httptools``, ``h11``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if implementation == "h11":
        base: type = H11Protocol
    elif implementation == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    else:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    mixin = _H11Deadlines if issubclass(base, H11Protocol) else _HttpToolsDeadlines
    return type(
        "Timed" + base.__name__, (mixin, base), {"header_timeout": header_timeout, "body_timeout": body_timeout}
    )


class _Deadlines(_ProtocolBase):
    """The timers; subclasses say when a request's headers begin, end, and when its body ends."""

    # Set by uvicorn's protocol classes, which these mixins are combined with.
    loop: Any
    transport: Any
    client: Any
    cycle: Any
    header_timeout: float
    body_timeout: float
    _deadline: asyncio.TimerHandle | None = None
    _waiting_for: str = ""  # "headers" | "body" | "" (nothing being received)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._expect("headers")

    def connection_lost(self, exc) -> None:
        self._expect("")
        super().connection_lost(exc)

    def _expect(self, what: str) -> None:
        """Start the deadline for receiving ``what`` (restarting it if it is new), or stop it ("")."""
        if what == self._waiting_for:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = what
        if what:
            seconds = self.header_timeout if what == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._deadline_passed, what, seconds)

    def _deadline_passed(self, what: str, seconds: float) -> None:
        self._deadline = None
        self._waiting_for = ""
        if self.transport.is_closing():
            return
        client = "%s:%d" % tuple(self.client[:2]) if self.client else "a client"
        log.info("closed the connection of %s: request %s not received within %g s", client, what, seconds)
        cycle = self.cycle
        current = cycle is not None and not cycle.response_complete
        if current and what == "body":
            # The application may be waiting in receive(): it now reads a disconnect, and writes nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        if not current or (what == "body" and not cycle.response_started):
            self.transport.write(_timeout_response(f"request {what} not received within {seconds:g} s"))
        self.transport.close()


class _HttpToolsDeadlines(_Deadlines, _HttpToolsBase):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect("headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._expect("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._expect("")


class _H11Deadlines(_Deadlines, _H11Base):
    def handle_events(self) -> None:
        super().handle_events()
        import h11

        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._expect("body")
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self._expect("headers")
        elif state is not h11.IDLE:
            self._expect("")


def _timeout_response(message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "connection: close\r\n\r\n").encode("ascii") + body
