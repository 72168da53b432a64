"""Every response body the API builds: errors, the submit answer, a job's status and result bodies
(the result body is also what webhooks POST), and server-sent events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from pipelines.generations import REQUEST_FEATURES
from pipelines.interface import TASK_I2V, TASK_T2V
from server.api.params import LORA_SCALE_LIMIT, MAX_KEYFRAMES, MAX_LORAS, MODEL_SLUG, T2V_SLUG
from server.jobs.record import Job, JobStatus

if TYPE_CHECKING:
    from server.jobs.service import JobService


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def submit_body(job: Job, base: str) -> dict:
    return {
        "request_id": job.id,
        "status": job.status.value,
        "poll_url": f"{base}/v1/requests/{job.id}",
        "status_url": f"{base}/v2/requests/{job.id}/status",
        "response_url": f"{base}/v2/requests/{job.id}",
    }


def status_body(service: JobService, job: Job) -> dict:
    body: dict = {"status": job.status.value, "request_id": job.id, "metrics": job.metrics(service.clock.now())}
    if job.status is JobStatus.FAILED:
        body["error"] = job.error
    # Additive fields beyond Segmind's body (clients that do not know them ignore them).
    body.update(job.progress_fields(service.store.queue_view(job), service.clock.now()))
    return body


def result_body(service: JobService, job: Job, base: str) -> dict:
    """The result body with absolute URLs under `base`; webhooks build it without a request."""
    body = status_body(service, job)
    body["seed"] = job.params.seed
    body["prompt"] = job.params.prompt
    if job.params.enhance_prompt:
        body["enhanced_prompt"] = job.enhanced_prompt
    if job.status is JobStatus.COMPLETED and job.output is not None:
        url = service.outputs.url(job, base)
        body["output"] = url
        body["video"] = {
            "url": url,
            "content_type": "video/mp4",
            "file_name": f"{job.id}.mp4",
            "file_size": service.outputs.size(job),
        }
    else:
        body["output"] = None
    return body


def loras_body(service: JobService) -> dict:
    return {
        "loras": [{"name": lora.name, "rank": lora.rank, "size_bytes": lora.size_bytes} for lora in service.loras],
        "max_per_request": MAX_LORAS,
        "scale_range": [-LORA_SCALE_LIMIT, LORA_SCALE_LIMIT],
    }


def capabilities_body(service: JobService) -> dict:
    """What requests may ask for here; the playground builds its form from it."""
    settings = service.settings
    served = settings.served_generation()
    offered = served.request_features if served is not None else REQUEST_FEATURES
    loras = loras_body(service)
    if "loras" not in offered:
        loras.update(loras=[], max_per_request=0)
    body: dict = {
        "models": [{"slug": MODEL_SLUG, "task": TASK_I2V}, {"slug": T2V_SLUG, "task": TASK_T2V}],
        "keyframes": {"max": MAX_KEYFRAMES if "keyframes" in offered else 0},
        "loras": loras,
        "enhance_prompt": "enhance_prompt" in offered,
        "content_policy": bool(settings.moderation),
    }
    if not settings.shared_store:
        body["recipe"] = settings.resolved_recipe()
    return body


def job_json(job: Job, body: dict) -> JSONResponse:
    # Segmind serves a FAILED job's body under 422; the SDK relies on it.
    return JSONResponse(body, status_code=422 if job.status is JobStatus.FAILED else 200)


def sse_message(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
