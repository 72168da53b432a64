"""The FastAPI application: Segmind's /v1 and /v2 routes for ``ltx-2-19b-i2v``.

``create_app(settings)`` builds everything; nothing is created at import time.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api import openapi
from server.api.hosts import AllowedHostsMiddleware, request_base_url, split_host
from server.api.openapi import (
    CANCEL_ERRORS,
    JOB_ERRORS,
    OUTPUT_ERRORS,
    SUBMIT_ERRORS,
    V1_ERRORS,
    HealthBody,
    ReadyBody,
    ResultBody,
    StatusBody,
    SubmitBody,
    allowed_methods,
    api_key_header,
    error_responses,
    install_openapi,
    job_responses,
)
from server.api.params import MODEL_SLUG, I2VParams, describe_validation_error
from server.api.routes_extra import install_extra_routes
from server.clock import Clock, SystemClock
from server.errors import (
    GenerationFailed,
    InvalidRequest,
    JobCancelledError,
    ModelNotFound,
    ServiceError,
    ServiceUnavailable,
    http_status_for,
)
from server.jobs.limits import BodySizeLimit, load_key_policies
from server.jobs.memory_store import InMemoryJobStore
from server.jobs.record import Job, JobStatus
from server.jobs.service import JobService
from server.jobs.store import JobStore
from server.settings import Settings
from server.storage.results import SharedDirStorage, results_storage
from server.workers.messages import FAULT_CANCELLED, FAULT_EXPIRED, FAULT_INPUT, FAULT_SHUTDOWN
from server.workers.pool import build_pool, devices_for

log = logging.getLogger("ltx2.app")


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The app; raises NoGpus when ``--gpus all`` finds no GPU, before anything starts."""
    clock = clock or SystemClock()
    devices = devices_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        results_dir, owns_dir = _prepare_results_dir(settings)
        store, limits = build_store(settings, clock, devices, results_dir)
        service = app.state.service = JobService(settings, store, clock, limits)
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
    )
    _install_error_handlers(app)
    _install_routes(app)
    install_openapi(app, settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AllowedHostsMiddleware, patterns=settings.parsed_allowed_hosts())
    return app


def build_store(settings: Settings, clock: Clock, devices, results_dir: Path) -> tuple[JobStore, object]:
    """The job store (and limits, None for local ones): this host's workers, or (``--store redis://``)
    an API replica with jobs, queue and limits in Redis, run by worker hosts (``ltx2-server worker``)."""
    if not settings.shared_store:
        store = InMemoryJobStore(settings.max_queue, SharedDirStorage(results_dir), clock, settings.ttl_seconds)
        store.attach_pool(build_pool(settings, store, clock, devices), settings.guidance)
        return store, None
    from server.jobs.redis_store import RedisJobStore, RedisLimits

    results = results_storage(results_dir, settings.results_s3, settings.s3_endpoint_url, settings.ttl_seconds)
    stale_after = max(10.0, settings.visibility_timeout)
    shared = RedisJobStore(settings.store, results, clock, settings.max_queue, settings.ttl_seconds, stale_after)
    return shared, RedisLimits(shared, load_key_policies(settings.api_keys), settings.rate_limit)


def _prepare_results_dir(settings: Settings) -> tuple[Path, bool]:
    if settings.results_dir:
        path = Path(settings.results_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix="ltx2-results-")), True


# ---- errors -----------------------------------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(http_status_for(exc), exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        messages = list(dict.fromkeys(describe_validation_error(error) for error in exc.errors()))
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


# ---- bodies -----------------------------------------------------------------------------------


def base_url(request: Request) -> str:
    """Where clients reach us: --public-url, else a trusted proxy's forwarded headers, else the request."""
    settings = request.app.state.service.settings
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


def status_body(request: Request, job: Job) -> dict:
    return request.app.state.service.status_body(job)


def result_body(request: Request, job: Job) -> dict:
    return request.app.state.service.result_body(job, base_url(request))


def job_json(job: Job, body: dict) -> JSONResponse:
    # Segmind serves a FAILED job's body under 422; the SDK relies on it.
    return JSONResponse(body, status_code=422 if job.status is JobStatus.FAILED else 200)


# ---- routes -----------------------------------------------------------------------------------


def _install_routes(app: FastAPI) -> None:
    def service_of(request: Request) -> JobService:
        return request.app.state.service

    # Dependencies are async on purpose: FastAPI runs plain `def` ones in a thread pool, which costs
    # more than the status route's whole work.
    async def caller(request: Request, x_api_key: str | None = Depends(api_key_header)) -> str | None:
        """The caller's identity (its API key), or None with auth off; 401 otherwise."""
        return service_of(request).authenticate(x_api_key)

    async def callers_job(request: Request, request_id: str, owner: str | None = Depends(caller)) -> Job:
        return await service_of(request).get(request_id, owner)

    @app.post(
        f"/v1/{MODEL_SLUG}",
        response_class=FileResponse,
        responses={
            200: {
                "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                "description": "The mp4 with audio.",
                "headers": {
                    "x-request-id": {"description": "The job's id.", "required": True, "schema": {"type": "string"}},
                    "x-generation-time": {
                        "description": "Seconds spent generating.",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    "x-seed-value": {"description": "The seed used.", "required": True, "schema": {"type": "string"}},
                },
            },
            **error_responses(*V1_ERRORS),
        },
        summary="Generate a video and wait for it (blocking)",
        operation_id=openapi.OP_RUN,
        tags=["v1"],
    )
    async def run_v1(request: Request, params: I2VParams, owner: str | None = Depends(caller)):
        service = service_of(request)
        job = await service.submit(params, owner, base_url=base_url(request))
        request.state.request_id = job.id  # for the request log line
        job = await service.wait_until_final(job, service.settings.sync_timeout)
        if job.status is JobStatus.FAILED:
            if job.fault == FAULT_INPUT:
                raise InvalidRequest(job.error or "invalid input")
            if job.fault == FAULT_CANCELLED:
                raise JobCancelledError(f"request {job.id} was cancelled", headers={"x-request-id": job.id})
            if job.fault in (FAULT_SHUTDOWN, FAULT_EXPIRED):
                raise ServiceUnavailable(job.error or "the server is shutting down")
            raise GenerationFailed(job.error or "generation failed")
        metrics = job.metrics(service.clock.now())
        headers = {
            "x-request-id": job.id,
            "x-generation-time": f"{metrics['inference_time']:.3f}",
            "x-seed-value": str(job.params["seed"]),
        }
        video = await service.outputs.finished_video(job)
        if isinstance(video, Path):
            return FileResponse(video, media_type="video/mp4", filename=f"{job.id}.mp4", headers=headers)
        # In a bucket: streamed through, since /v1 callers expect the bytes themselves.
        headers.update(
            {"content-length": str(video.size), "content-disposition": f'attachment; filename="{job.id}.mp4"'}
        )
        return StreamingResponse(video, media_type="video/mp4", headers=headers)

    @app.post(
        f"/v2/{MODEL_SLUG}",
        response_model=None,
        responses={
            200: {"model": SubmitBody, "description": "Accepted and queued.", "links": openapi.SUBMIT_LINKS},
            **error_responses(*SUBMIT_ERRORS),
        },
        summary="Submit a generation job",
        operation_id=openapi.OP_SUBMIT,
        tags=["v2"],
    )
    async def submit_v2(request: Request, params: I2VParams, owner: str | None = Depends(caller)) -> dict:
        job = await service_of(request).submit(params, owner, base_url=base_url(request))
        request.state.request_id = job.id  # for the request log line
        base = base_url(request)
        return {
            "request_id": job.id,
            "status": job.status.value,
            "poll_url": f"{base}/v1/requests/{job.id}",
            "status_url": f"{base}/v2/requests/{job.id}/status",
            "response_url": f"{base}/v2/requests/{job.id}",
        }

    @app.post("/v1/{slug}", include_in_schema=False)
    @app.post("/v2/{slug}", include_in_schema=False)
    async def unknown_model(slug: str):
        raise ModelNotFound(f"Model {slug} not found; this server serves {MODEL_SLUG}")

    @app.get(
        "/v2/requests/{request_id}/status",
        responses=job_responses(StatusBody, *JOB_ERRORS),
        summary="Poll a job's status",
        operation_id=openapi.OP_STATUS,
        tags=["v2"],
    )
    async def job_status(request: Request, job: Job = Depends(callers_job)):
        return job_json(job, status_body(request, job))

    @app.get(
        "/v2/requests/{request_id}",
        responses=job_responses(ResultBody, *JOB_ERRORS),
        summary="Fetch a job's result",
        operation_id=openapi.OP_RESULT,
        tags=["v2"],
    )
    @app.get(
        "/v1/requests/{request_id}",
        responses=job_responses(ResultBody, *JOB_ERRORS),
        summary="Fetch a job's result (legacy poll_url)",
        operation_id=openapi.OP_RESULT_V1,
        tags=["v1"],
    )
    async def job_result(request: Request, job: Job = Depends(callers_job)):
        return job_json(job, result_body(request, job))

    @app.delete(
        "/v2/requests/{request_id}",
        summary="Cancel a queued or running job",
        operation_id=openapi.OP_CANCEL,
        description=(
            "A queued job is dropped; a running one stops at its next denoising step. Answers once the "
            'job has stopped: its status is then FAILED with error "cancelled". 409 if it already finished.'
        ),
        responses={
            200: {"model": StatusBody, "description": 'The cancelled job: `"status": "FAILED", "error": "cancelled"`.'},
            **error_responses(*CANCEL_ERRORS),
        },
        tags=["v2"],
    )
    async def cancel_job(request: Request, job: Job = Depends(callers_job)):
        job = await service_of(request).cancel(job)
        return JSONResponse(status_body(request, job))

    @app.get(
        "/outputs/{request_id}/{token}/{file_name}",
        response_class=FileResponse,
        responses={
            200: {
                "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                "description": "The mp4.",
            },
            307: {"description": "With results in a bucket: a redirect to the video's presigned URL."},
            **error_responses(*OUTPUT_ERRORS),
        },
        summary="Download a finished video (the URL in `output`)",
        operation_id=openapi.OP_OUTPUT,
        tags=["files"],
    )
    async def output_file(request: Request, request_id: str, token: str, file_name: str):
        found = await service_of(request).outputs.file(request_id, token)
        if isinstance(found, str):
            return RedirectResponse(found, status_code=307)  # a presigned URL of the bucket
        return FileResponse(found, media_type="video/mp4", filename=f"{request_id}.mp4")

    @app.get(
        "/health",
        response_model=None,
        responses={200: {"model": HealthBody, "description": "Up."}},
        summary="The API process is up",
        tags=["ops"],
    )
    async def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        responses={
            200: {"model": ReadyBody, "description": "Ready: a worker has loaded the model."},
            503: {"model": ReadyBody, "description": "Not ready (loading, failed, draining, or no worker connected)."},
        },
        summary="The model is loaded and a worker can take jobs",
        tags=["ops"],
    )
    async def ready(request: Request):
        service = service_of(request)
        body = await service.store.readiness()
        if not service.accepting:
            # Draining after SIGTERM: a load balancer should send new work elsewhere.
            body.update(ready=False, draining=True)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    install_extra_routes(app, callers_job, status_body, result_body)
