"""What the routes depend on: the service, the caller's API key, the caller's job, and the base URL."""

from __future__ import annotations

from fastapi import Depends, Request

from server.api.hosts import request_base_url, split_host
from server.api.openapi import api_key_header
from server.jobs.record import Job
from server.jobs.service import JobService


def service_of(request: Request) -> JobService:
    return request.app.state.service


# Dependencies are async on purpose: FastAPI runs plain `def` ones in a thread pool, which costs
# more than the status route's whole work.
async def caller(request: Request, x_api_key: str | None = Depends(api_key_header)) -> str | None:
    """The caller's identity (its API key), or None with auth off; 401 otherwise."""
    return service_of(request).authenticate(x_api_key)


async def callers_job(request: Request, request_id: str, owner: str | None = Depends(caller)) -> Job:
    return await service_of(request).get(request_id, owner)


def base_url(request: Request) -> str:
    """Where clients reach us: --public-url, else a trusted proxy's forwarded headers, else the request."""
    settings = service_of(request).settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if settings.trust_forwarded_headers:
        forwarded = _forwarded_base_url(request)
        if forwarded:
            return forwarded
    return request_base_url(request)  # (its Host header only when well formed)


def _forwarded_base_url(request: Request) -> str | None:
    # Proxies append to these headers; the first value is the one the client used.
    def first(name: str) -> str:
        return request.headers.get(name, "").split(",")[0].strip()

    host = first("x-forwarded-host")
    if not host or split_host(host) is None:
        return None
    proto = first("x-forwarded-proto") or request.url.scheme
    prefix = first("x-forwarded-prefix").rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return f"{proto}://{host}{prefix}"
