"""A job's status as Server-Sent Events until it ends."""

from __future__ import annotations

from typing import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from server.api.bodies import result_body, sse_message, status_body
from server.api.deps import base_url, callers_job, service_of
from server.api.openapi import JOB_ERRORS, OP_EVENTS, STATUS_EVENT_SCHEMA, error_responses
from server.jobs.record import Job

router = APIRouter()


@router.get(
    "/v2/requests/{request_id}/events",
    summary="Stream a job's status as Server-Sent Events until it ends",
    operation_id=OP_EVENTS,
    description=(
        "Each change is an `event: status` whose data is the status body (with `progress`, `stage`, "
        "`step`, `total_steps`, `queue_position`, `eta_seconds`); the last event is the result body "
        "of the COMPLETED or FAILED job, then the stream closes. Idle streams get a comment every 15 s."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": STATUS_EVENT_SCHEMA}}, "description": "The events."},
        **error_responses(*JOB_ERRORS),
    },
    tags=["v2"],
)
async def job_events(request: Request, job: Job = Depends(callers_job)):
    service = service_of(request)

    async def messages() -> AsyncIterator[str]:
        async for current in service.store.changes(job):
            if current is None:
                yield ": keep-alive\n\n"
            elif current.status.is_final:
                yield sse_message("status", result_body(service, current, base_url(request)))
            else:
                yield sse_message("status", status_body(service, current))

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-request-id": job.id},
    )
