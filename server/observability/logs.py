"""Logging: text or JSON lines, one per HTTP request and per job transition, with the request id (in JSON,
``event``, ``status``, ``http_status``, ``duration_ms``... are fields, so tools filter without parsing).
Every line shows URLs without their secrets (``server.observability.redaction``) and ``/outputs/...``
download tokens as ``***``; text lines escape control characters, so one record is one line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone

from server.jobs.record import Job
from server.observability.redaction import escape_control_characters, redact_request_path, redact_urls_in

# Fields passed with `extra=` that the JSON formatter writes out.
STRUCTURED_FIELDS = (
    *("request_id", "event", "status", "stage", "error", "queue_seconds", "generation_seconds"),
    *("method", "path", "http_status", "duration_ms", "client"),
)
_REQUEST_ID_IN_PATH = re.compile(r"^/(?:v1|v2)/requests/([^/]+)|^/outputs/([^/]+)/")

access_log = logging.getLogger("ltx2.http")
job_log = logging.getLogger("ltx2.jobs")


# Loggers whose lines carry full request URLs (httpx logs each request at INFO, httpcore at DEBUG):
# the server logs its own fetches and deliveries, with the URLs redacted.
QUIET_LOGGERS = ("httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; json.dumps escapes control characters itself."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_urls_in(record.getMessage()),
        }
        for name in STRUCTURED_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact_urls_in(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact_urls_in(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, the message's URLs redacted and its control characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record = logging.makeLogRecord(record.__dict__)
        record.message = escape_control_characters(redact_urls_in(record.message))
        return super().formatMessage(record)

    def formatException(self, exc_info) -> str:  # noqa: N802 - logging's name
        # A traceback keeps its lines; what an exception's text quotes from a request is redacted.
        return redact_urls_in(super().formatException(exc_info))


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def uvicorn_log_config(log_format: str) -> dict | None:
    """None leaves uvicorn's loggers to ours (JSON lines); text keeps uvicorn's own start-up format."""
    if log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def log_job_change(job: Job, change: str) -> None:
    """A JobEventHub listener: one line per transition (progress only at debug level)."""
    if change == "progress":
        extra = {"request_id": job.id, "event": change, "stage": job.stage}
        job_log.debug("job %s %s %s/%s", job.id, job.stage, job.step, job.total_steps, extra=extra)
        return
    metrics = job.metrics(job.finished_at or job.started_at or job.created_at)
    fields: dict[str, object] = {"request_id": job.id, "event": change, "status": job.status.value}
    if change == "started" or job.status.is_final:
        fields["queue_seconds"] = metrics["queue_time"]
    if job.status.is_final:
        fields["generation_seconds"] = metrics["inference_time"]
    if job.error:
        fields["error"] = job.error
    level = logging.WARNING if change == "failed" else logging.INFO
    job_log.log(level, "job %s %s", job.id, change, extra=fields)


class RequestLogMiddleware:
    """Pure ASGI (so streamed responses pass untouched): one line per finished HTTP request."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = {"status": 500, "request_id": None}

        async def send_and_watch(message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        answer["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self._log(scope, answer, time.perf_counter() - started)

    @staticmethod
    def _log(scope, answer: dict, seconds: float) -> None:
        path = scope.get("path", "")
        request_id = answer["request_id"] or scope.get("state", {}).get("request_id")
        if request_id is None:
            match = _REQUEST_ID_IN_PATH.match(path)
            request_id = (match.group(1) or match.group(2)) if match else None
        # The path comes from the client: the formatters escape it (text) or quote it (JSON).
        path = redact_request_path(path)
        method, status, client = scope.get("method"), answer["status"], scope.get("client")
        extra = {
            "request_id": request_id,
            "event": "http_request",
            "method": method,
            "path": path,
            "http_status": status,
            "duration_ms": round(seconds * 1000, 2),
            "client": client[0] if client else None,
        }
        shown_id = f" request_id={request_id}" if request_id else ""
        access_log.info("%s %s %s %.1f ms%s", method, path, status, seconds * 1000, shown_id, extra=extra)
