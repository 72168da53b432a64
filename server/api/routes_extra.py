"""Routes beyond Segmind's API: the events stream, /metrics and the browser playground.

Installed by ``server.api.app`` with its own dependencies, so auth and job lookup work as on every route.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from server.api.openapi import JOB_ERRORS, OP_EVENTS, STATUS_EVENT_SCHEMA, error_responses
from server.jobs.record import Job
from server.observability.logs import RequestLogMiddleware
from server.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

STATIC_DIR = Path(__file__).resolve().parent / "static"


def sse_message(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def install_extra_routes(app: FastAPI, callers_job, status_body, result_body) -> None:
    app.add_middleware(RequestLogMiddleware)
    # The playground: local files only (no CDN), talking to the public API like any client.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format); no API key needed, like /health",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The metrics."}},
        tags=["ops"],
    )
    async def metrics(request: Request) -> Response:
        metrics = request.app.state.service.metrics
        await metrics.refresh()
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get(
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
        async def messages() -> AsyncIterator[str]:
            async for current in request.app.state.service.store.changes(job):
                if current is None:
                    yield ": keep-alive\n\n"
                else:
                    body = result_body(request, current) if current.status.is_final else status_body(request, current)
                    yield sse_message("status", body)

        return StreamingResponse(
            messages(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-request-id": job.id},
        )
