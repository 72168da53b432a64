"""A job's routes: its status, its result (also at the legacy /v1 poll_url), and cancelling it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from server.api import openapi
from server.api.bodies import job_json, result_body, status_body
from server.api.deps import base_url, callers_job, service_of
from server.api.openapi import CANCEL_ERRORS, JOB_ERRORS, ResultBody, StatusBody, error_responses, job_responses
from server.jobs.record import Job

router = APIRouter()


@router.get(
    "/v2/requests/{request_id}/status",
    responses=job_responses(StatusBody, *JOB_ERRORS),
    summary="Poll a job's status",
    operation_id=openapi.OP_STATUS,
    tags=["v2"],
)
async def job_status(request: Request, job: Job = Depends(callers_job)):
    return job_json(job, status_body(service_of(request), job))


@router.get(
    "/v2/requests/{request_id}",
    responses=job_responses(ResultBody, *JOB_ERRORS),
    summary="Fetch a job's result",
    operation_id=openapi.OP_RESULT,
    tags=["v2"],
)
@router.get(
    "/v1/requests/{request_id}",
    responses=job_responses(ResultBody, *JOB_ERRORS),
    summary="Fetch a job's result (legacy poll_url)",
    operation_id=openapi.OP_RESULT_V1,
    tags=["v1"],
)
async def job_result(request: Request, job: Job = Depends(callers_job)):
    return job_json(job, result_body(service_of(request), job, base_url(request)))


@router.delete(
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
    service = service_of(request)
    job = await service.cancel(job)
    return JSONResponse(status_body(service, job))
