"""The FastAPI app serving ``ltx-2-19b-i2v`` as Segmind does: ``create_app(settings)`` builds the store,
the service, the routers, the error handlers and all middleware; nothing is created at import time.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api.bodies import error_response, result_body
from server.api.hosts import AllowedHostsMiddleware
from server.api.ignored_fields import IgnoredFieldsMiddleware
from server.api.openapi import allowed_methods, install_openapi
from server.api.params import describe_validation_error
from server.api.routes import apidocs, events, jobs, loras, ops, outputs, playground, segmind
from server.clock import Clock, SystemClock
from server.errors import JobNotFound, ServiceError, http_status_for
from server.jobs.limits import BodySizeLimit, load_key_policies
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.service import JobService
from server.jobs.store import JobStore
from server.observability.logs import RequestLogMiddleware
from server.settings import Settings
from server.storage.results import SharedDirStorage, results_storage
from server.workers.pool import build_pool, devices_for

log = logging.getLogger("ltx2.app")


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The app; raises NoGpus when ``--gpus all`` finds no GPU, before anything starts."""
    clock = clock or SystemClock()
    devices = devices_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owns_dir = not settings.results_dir
        results_dir = Path(tempfile.mkdtemp(prefix="ltx2-results-") if owns_dir else settings.results_dir).resolve()
        results_dir.mkdir(parents=True, exist_ok=True)
        app.state.temporary_results = results_dir if owns_dir else None  # (serve removes it on a forced exit)
        store, limits = build_store(settings, clock, devices, results_dir)
        service = app.state.service = JobService(settings, store, clock, limits, result_body)
        if not settings.shared_store and settings.serves_test_model():
            log.warning(settings.test_model_warning())
        if not service.api_keys:
            log.warning("no API keys configured: authentication is OFF, any client may submit jobs")
        await service.open()
        try:
            yield
        finally:
            await service.close()
            if owns_dir:
                shutil.rmtree(results_dir, ignore_errors=True)

    app = FastAPI(
        title="ltx2-server",
        summary="Segmind-compatible LTX-2 19B image-to-video server",
        description=(
            "Drop-in local replacement for Segmind's `ltx-2-19b-i2v`: point the `segmind` SDK at "
            '`http://HOST:PORT/v1`. Every error body is `{"error": "..."}`.'
        ),
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc come from server/api/routes/apidocs.py, with files installed with the server
        docs_url=None,
        redoc_url=None,
    )
    _install_error_handlers(app, settings)
    for module in (segmind, loras, jobs, outputs, ops, playground, events, apidocs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=playground.STATIC_DIR), name="static")
    install_openapi(app, settings)
    # Outermost last: the Host check, then the body size cap, then the request log line, then x-ignored-fields.
    app.add_middleware(IgnoredFieldsMiddleware)
    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AllowedHostsMiddleware, patterns=settings.parsed_allowed_hosts())
    return app


def build_store(settings: Settings, clock: Clock, devices, results_dir: Path) -> tuple[JobStore, object]:
    """The job store and its limits (None: the service's own): this host's workers, or an API replica."""
    if not settings.shared_store:
        store = InMemoryJobStore(settings.max_queue, SharedDirStorage(results_dir), clock, settings.ttl_seconds)
        store.attach_pool(build_pool(settings, lambda index: store, clock, devices), settings.guidance)
        return store, None
    from server.jobs.redis_store import RedisJobStore, RedisLimits

    results = results_storage(results_dir, settings.results_s3, settings.s3_endpoint_url, settings.ttl_seconds)
    stale_after = max(10.0, settings.visibility_timeout)
    shared = RedisJobStore(settings.store, results, clock, settings.max_queue, settings.ttl_seconds, stale_after)
    return shared, RedisLimits(shared, load_key_policies(settings.api_keys), settings.rate_limit)


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    # An unknown id is often an expired one: the contract's text, then how long results are kept.
    kept_for = f" (results are kept for {settings.ttl_seconds:g} s after submission: --ttl-seconds)"

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        message = exc.message + kept_for if isinstance(exc, JobNotFound) else exc.message
        return error_response(http_status_for(exc), message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = exc.body
        messages = list(dict.fromkeys(describe_validation_error(error, body) for error in exc.errors()))
        return error_response(400, "; ".join(messages) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        methods = allowed_methods(request.app, request.scope) if exc.status_code == 405 else []
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return error_response(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")
