"""Domain errors raised below the routes, and the one table that maps them to HTTP answers."""

from __future__ import annotations

from server.observability.redaction import redact_urls_in


class ServiceError(Exception):
    """Base: carries the client-facing message and optional extra headers.

    URLs in the message lose their secrets here (user info, query values: ``server.observability.redaction``), so
    no answer, job error or log line built from a domain error repeats a client's credentials."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        message = redact_urls_in(message)
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(ServiceError):
    """Bad parameters or request format."""


class Unauthorized(ServiceError):
    """Missing or wrong API key."""


class ModelNotFound(ServiceError):
    """An unknown model slug."""


class JobNotFound(ServiceError):
    """The request id is unknown, has expired, or belongs to another key."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Request {job_id} not found")


class BodyTooLarge(ServiceError):
    """The request body is larger than --max-body-bytes."""


class QueueFull(ServiceError):
    """The bounded queue has no room; the client should retry later."""


class FetchesBusy(ServiceError):
    """As many image URLs are being downloaded as --max-image-fetches allows; retry shortly."""


class RateLimited(ServiceError):
    """The key sent more submissions per minute than allowed."""


class InsufficientCredits(ServiceError):
    """The key's job or GPU-seconds budget is spent."""


class NotCancellable(ServiceError):
    """A DELETE for a job that already finished (other than by being cancelled)."""


class JobCancelledError(ServiceError):
    """A /v1 call whose job was cancelled through DELETE /v2/requests/{id}."""


class OutputGone(ServiceError):
    """A finished job's video was removed from the results directory under the server."""


class InputGone(ServiceError):
    """A job's stored input image is missing where a worker host looks for it (removed or expired)."""


class GenerationFailed(ServiceError):
    """A /v1 call whose job failed for a reason that is not the input's fault."""


class ContentRefused(ServiceError):
    """A /v1 call whose job the content policy (--moderation) refused: "content blocked: <reason>"."""


class ServiceUnavailable(ServiceError):
    """The server is shutting down or the worker cannot serve."""


class StoreUnavailable(ServiceUnavailable):
    """The shared job store (Redis) cannot be reached; nothing was changed."""


class WaitTimedOut(ServiceError):
    """A /v1 caller waited past its limit; the job goes on and stays pollable."""


HTTP_STATUS_FOR_ERROR: dict[type[ServiceError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    **dict.fromkeys((ModelNotFound, JobNotFound), 404),
    InsufficientCredits: 406,
    **dict.fromkeys((NotCancellable, JobCancelledError), 409),
    OutputGone: 410,
    ContentRefused: 422,  # as the hosted API's FAILED answers (status and result endpoints)
    BodyTooLarge: 413,
    **dict.fromkeys((QueueFull, FetchesBusy, RateLimited), 429),
    **dict.fromkeys((InputGone, GenerationFailed), 500),
    ServiceUnavailable: 503,
    WaitTimedOut: 504,
}


def http_status_for(error: ServiceError) -> int:
    return http_status_for_class(type(error))


def http_status_for_class(error_class: type[ServiceError]) -> int:
    """An error class's own entry, else its nearest base's (the OpenAPI document's statuses come from this too)."""
    for cls in error_class.__mro__:
        if cls in HTTP_STATUS_FOR_ERROR:
            return HTTP_STATUS_FOR_ERROR[cls]
    return 500
