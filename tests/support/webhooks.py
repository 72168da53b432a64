"""A webhook receiver on loopback that records every call, and the signature check a receiver does."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "test-webhook-secret"


class Receiver:
    """Records every POST; /ok answers 200, /slow-fail waits a second then answers 500."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()}
                    )
                if self.path.startswith("/slow-fail"):
                    time.sleep(1.0)
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        return Handler

    def for_job(self, request_id: str) -> list[dict]:
        with self.lock:
            return [call for call in self.calls if call["headers"].get("x-request-id") == request_id]


@contextmanager
def receiver_on_loopback():
    receiver = Receiver()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield receiver, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def verified(call: dict) -> dict:
    expected = "sha256=" + hmac.new(SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call["headers"]["x-ltx2-signature"], expected)
    assert call["headers"]["content-type"] == "application/json"
    return json.loads(call["body"])
