"""Segmind's submit routes, for the image-to-video slug and the text-to-video one: the blocking /v1 call
(answers the mp4) and the /v2 queue submission."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api import openapi
from server.api.bodies import submit_body
from server.api.deps import base_url, caller, service_of
from server.api.openapi import SUBMIT_ERRORS, V1_ERRORS, SubmitBody, allowed_methods, error_responses
from server.api.params import MODEL_SLUG, T2V_SLUG, I2VParams, T2VParams, job_spec
from server.errors import (
    ContentRefused,
    GenerationFailed,
    InvalidRequest,
    JobCancelledError,
    ModelNotFound,
    ServiceUnavailable,
)
from server.jobs.record import Job, JobStatus
from server.workers.messages import FAULT_CANCELLED, FAULT_CONTENT, FAULT_EXPIRED, FAULT_INPUT, FAULT_SHUTDOWN

router = APIRouter()

# How often a waiting /v1 handler checks that its caller is still connected.
DISCONNECT_POLL_SECONDS = 0.5
# Logged (and sent nowhere: the caller is gone) when a /v1 caller closed its connection, as nginx's 499.
CLIENT_CLOSED_REQUEST = 499
CALLER_GONE = "the /v1 caller closed its connection before the video was ready"


async def _wait_while_connected(request: Request, service, job) -> Job | None:
    """The job once final; None when the caller went away first (or the handler is cancelled): then it is cancelled."""
    waiter = asyncio.ensure_future(service.wait_until_final(job, service.settings.sync_timeout))
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                waiter.cancel()
                await service.abandon(job, CALLER_GONE)
                return None
    except asyncio.CancelledError:
        waiter.cancel()
        await asyncio.shield(service.abandon(job, CALLER_GONE))
        raise


V1_RESPONSES = {
    200: {
        "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The mp4 with audio.",
        "headers": {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in (
                ("x-request-id", "The job's id."),
                ("x-generation-time", "Seconds spent generating."),
                ("x-seed-value", "The seed used."),
            )
        },
    },
    **error_responses(*V1_ERRORS),
}


@router.post(
    f"/v1/{MODEL_SLUG}",
    response_class=FileResponse,
    responses=V1_RESPONSES,
    summary="Generate a video from an image and wait for it (blocking)",
    operation_id=openapi.OP_RUN,
    tags=["v1"],
)
async def run_v1(request: Request, params: I2VParams, owner: str | None = Depends(caller)):
    return await _run_blocking(request, params, owner)


@router.post(
    f"/v1/{T2V_SLUG}",
    response_class=FileResponse,
    responses=V1_RESPONSES,
    summary="Generate a video from the prompt alone and wait for it (blocking)",
    operation_id=openapi.OP_RUN_T2V,
    tags=["v1"],
)
async def run_v1_t2v(request: Request, params: T2VParams, owner: str | None = Depends(caller)):
    return await _run_blocking(request, params, owner)


async def _submitted(request: Request, params: T2VParams, owner: str | None) -> Job:
    image, keyframe_images = params.input_images()
    job = await service_of(request).submit(
        job_spec(params), image, params.webhook, owner, base_url(request), keyframe_images
    )
    request.state.request_id = job.id  # for the request log line
    return job


async def _run_blocking(request: Request, params: T2VParams, owner: str | None):
    service = service_of(request)
    job = await _submitted(request, params, owner)
    final = await _wait_while_connected(request, service, job)
    if final is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    job = final
    if job.status is JobStatus.FAILED:
        if job.fault == FAULT_INPUT:
            raise InvalidRequest(job.error or "invalid input")
        if job.fault == FAULT_CONTENT:
            raise ContentRefused(job.error or "content blocked")
        if job.fault == FAULT_CANCELLED:
            raise JobCancelledError(f"request {job.id} was cancelled", headers={"x-request-id": job.id})
        if job.fault in (FAULT_SHUTDOWN, FAULT_EXPIRED):
            raise ServiceUnavailable(job.error or "the server is shutting down")
        raise GenerationFailed(job.error or "generation failed")
    metrics = job.metrics(service.clock.now())
    headers = {
        "x-request-id": job.id,
        "x-generation-time": f"{metrics['inference_time']:.3f}",
        "x-seed-value": str(job.params.seed),
    }
    video = await service.outputs.finished_video(job)
    if isinstance(video, Path):
        return FileResponse(video, media_type="video/mp4", filename=f"{job.id}.mp4", headers=headers)
    # In a bucket: streamed through, since /v1 callers expect the bytes themselves.
    headers.update({"content-length": str(video.size), "content-disposition": f'attachment; filename="{job.id}.mp4"'})
    return StreamingResponse(video, media_type="video/mp4", headers=headers)


SUBMIT_RESPONSES = {
    200: {"model": SubmitBody, "description": "Accepted and queued.", "links": openapi.SUBMIT_LINKS},
    **error_responses(*SUBMIT_ERRORS),
}


@router.post(
    f"/v2/{MODEL_SLUG}",
    response_model=None,
    responses=SUBMIT_RESPONSES,
    summary="Submit an image-to-video job",
    operation_id=openapi.OP_SUBMIT,
    tags=["v2"],
)
async def submit_v2(request: Request, params: I2VParams, owner: str | None = Depends(caller)) -> dict:
    return submit_body(await _submitted(request, params, owner), base_url(request))


@router.post(
    f"/v2/{T2V_SLUG}",
    response_model=None,
    responses=SUBMIT_RESPONSES,
    summary="Submit a text-to-video job",
    operation_id=openapi.OP_SUBMIT_T2V,
    tags=["v2"],
)
async def submit_v2_t2v(request: Request, params: T2VParams, owner: str | None = Depends(caller)) -> dict:
    return submit_body(await _submitted(request, params, owner), base_url(request))


@router.post("/v1/{slug}", include_in_schema=False)
@router.post("/v2/{slug}", include_in_schema=False)
async def unknown_model(request: Request, slug: str):
    if allowed_methods(request.app, request.scope):
        # A path another route serves with other methods (GET /v1/loras): 405 with Allow, not "no such model".
        raise StarletteHTTPException(405, "Method Not Allowed")
    raise ModelNotFound(f"Model {slug} not found; this server serves {MODEL_SLUG} and {T2V_SLUG}")
