"""What /openapi.json declares: every status each route can answer (from the domain errors it names and
the errors table of ``server.errors``, not by hand), the bodies of its answers, and the API key as a
security scheme.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Match, Route

from server import errors as err

API_KEY_HEADER = "x-api-key"
SECURITY_SCHEME = "ApiKeyAuth"

# The dependency that reads the key: FastAPI declares it as an apiKey security scheme (Swagger's
# Authorize button). auto_error=False: the service decides (no keys configured: auth is off).
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=SECURITY_SCHEME,
    description="Your API key, as Segmind's SDK sends it. Not needed when the server has no keys configured.",
    auto_error=False,
)

Status = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]


class _Open(BaseModel):
    # Bodies may gain fields; clients ignore the ones they do not know.
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, naming the field or the reason.")


class Metrics(_Open):
    queue_time: float = Field(description="Seconds spent waiting for a worker.")
    inference_time: float = Field(description="Seconds spent generating.")
    total_time: float = Field(description="Seconds since submission (until the job ended).")


class StatusBody(_Open):
    status: Status
    request_id: str
    metrics: Metrics
    error: str | None = Field(None, description="Why the job failed (FAILED only); `cancelled` after a DELETE.")
    progress: float = Field(description="0 to 1: the job's share done, beyond Segmind's body.")
    stage: str | None = Field(
        description="queued, starting, enhancing_prompt, encoding_prompt, denoising, decoding_audio, decoding_video, "
        "muxing, then completed or failed."
    )
    step: int | None = Field(description="Denoising step reached.")
    total_steps: int | None
    queue_position: int | None = Field(description="1 for the next job to run; null once the job left the queue.")
    eta_seconds: float | None = Field(description="Estimated seconds until the job ends; null when unknown.")


class VideoInfo(_Open):
    url: str
    content_type: Literal["video/mp4"]
    file_name: str
    file_size: int | None


class ResultBody(StatusBody):
    output: str | None = Field(description="Absolute URL of the video once COMPLETED, else null.")
    video: VideoInfo | None = Field(None, description="Present once COMPLETED.")
    seed: int = Field(description="The seed used (a random one when -1 was sent).")
    prompt: str
    enhanced_prompt: str | None = Field(
        None,
        description="Only when the request sent enhance_prompt: true: the rewritten prompt the video was made from "
        "(null until the job completes).",
    )


class LoraInfo(BaseModel):
    name: str = Field(description="What a request's `loras` entry names.")
    rank: int | None = Field(description="The LoRA's rank, read from its file (null when not recognised).")
    size_bytes: int


class LorasBody(BaseModel):
    loras: list[LoraInfo] = Field(description="The server's LoRAs (`--loras DIR`), by name; empty without one.")
    max_per_request: int
    scale_range: list[float] = Field(description="The lowest and highest `scale` a request may send.")


class ModelInfo(BaseModel):
    slug: str = Field(description="The path segment of POST /v1/<slug> and POST /v2/<slug>.")
    task: str = Field(description="i2v (image to video) or t2v (text to video).")


class CapabilitiesBody(BaseModel):
    models: list[ModelInfo]
    recipe: str | None = Field(None, description="The recipe the workers run; absent on an API replica.")
    keyframes: dict[str, int] = Field(description="`max`: keyframes per image-to-video request.")
    loras: LorasBody
    enhance_prompt: bool = Field(description="Whether requests may send enhance_prompt: true.")
    content_policy: bool = Field(description="Whether a content policy checks prompts, images and outputs.")


class SubmitBody(_Open):
    request_id: str
    status: Status = Field(description="QUEUED when accepted.")
    poll_url: str = Field(description="Absolute URL of the result (legacy /v1 path).")
    status_url: str = Field(description="Absolute URL of the status.")
    response_url: str = Field(description="Absolute URL of the result.")


class HealthBody(_Open):
    status: Literal["ok"]


class ReadyBody(_Open):
    ready: bool
    worker: str | None = Field(None, description="The best worker state: starting, loading, ready, busy, ...")
    worker_pid: int | None = None
    worker_restarts: int | None = None
    queued: int | None = Field(None, description="Jobs waiting.")
    workers: list[dict[str, Any]] | None = Field(None, description="Each worker (or, with Redis, each worker host).")
    model: str | None = None
    test_model: bool | None = Field(
        None,
        description="true when this server runs the tiny test model (random weights: its videos are noise), "
        "as `--model tiny`, or `auto` without weights, does; absent on an API replica of a shared store.",
    )
    generation: dict[str, str] | None = Field(
        None,
        description="The LTX-2 generation this server's workers run: `name` (as `--model` spells it), `title`, "
        "`version` (2.0, 2.3 or 2.5); absent on an API replica of a shared store and for a custom generator.",
    )
    auth_required: bool | None = Field(
        None, description="true when requests need an `x-api-key` header (the server has keys)."
    )
    webhooks: bool | None = Field(
        None, description="true when the server can sign webhooks (it has a webhook secret); else a `webhook` gets 400."
    )
    guidance: str | None = None
    store: str | None = Field(None, description="`redis` on an API replica of a shared store.")
    store_reachable: bool | None = None
    draining: bool | None = Field(None, description="true after SIGTERM: send new work elsewhere.")
    error: str | None = Field(None, description="Why the server is not ready.")
    capabilities: CapabilitiesBody | None = Field(
        None, description="What requests may ask for: the slugs, keyframes, LoRAs, prompt enhancement."
    )


# One event of GET /v2/requests/{id}/events (OpenAPI 3.1 describes a stream by its events).
STATUS_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "status"},
        "data": {
            "type": "string",
            "description": "The status body as JSON; the last event carries the result body of the ended job.",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [{"$ref": "#/components/schemas/StatusBody"}, {"$ref": "#/components/schemas/ResultBody"}]
            },
        },
    },
}


# Response headers some errors carry (declared required only when every error of a status has them).
_ERROR_HEADERS: dict[type[err.ServiceError], dict[str, str]] = {
    err.QueueFull: {"Retry-After": "Seconds to wait before retrying."},
    err.FetchesBusy: {"Retry-After": "Seconds to wait before retrying."},
    err.RateLimited: {
        "Retry-After": "Seconds until the oldest counted submission leaves the 60-second window.",
        "x-rate-limit-reset-at-utc": "When that happens, e.g. 2026-11-25T04:10:00Z.",
    },
    err.WaitTimedOut: {"x-request-id": "The job's id: it goes on and can be polled through /v2."},
    err.JobCancelledError: {"x-request-id": "The cancelled job's id."},
}

# What the routes raise, by the part of the request that raises it.
AUTH_ERRORS = (err.Unauthorized,)
BODY_ERRORS = (err.InvalidRequest, err.BodyTooLarge)
JOB_ERRORS = (*AUTH_ERRORS, err.JobNotFound, err.StoreUnavailable)
LIMIT_ERRORS = (err.InsufficientCredits, err.QueueFull, err.FetchesBusy, err.RateLimited)
SUBMIT_ERRORS = (*BODY_ERRORS, *AUTH_ERRORS, *LIMIT_ERRORS, err.GenerationFailed, err.ServiceUnavailable)
V1_ERRORS = (*SUBMIT_ERRORS, err.JobCancelledError, err.ContentRefused, err.WaitTimedOut)
CANCEL_ERRORS = (*JOB_ERRORS, err.NotCancellable)
OUTPUT_ERRORS = (err.JobNotFound, err.OutputGone, err.StoreUnavailable)


def _summary(error: type[err.ServiceError]) -> str:
    return (error.__doc__ or error.__name__).strip().splitlines()[0].strip()


def error_responses(*errors: type[err.ServiceError]) -> dict[int | str, dict[str, Any]]:
    """One ``{"error"}`` answer per status of the errors table, described by the errors that give it."""
    by_status: dict[int, list[type[err.ServiceError]]] = {}
    for error in dict.fromkeys(errors):
        by_status.setdefault(err.http_status_for_class(error), []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        answer: dict[str, Any] = {"model": ErrorBody, "description": " Or: ".join(_summary(e) for e in group)}
        headers: dict[str, dict[str, Any]] = {}
        for error in group:
            for name, text in _ERROR_HEADERS.get(error, {}).items():
                headers.setdefault(name, {"description": text, "schema": {"type": "string"}})
        for name, header in headers.items():
            header["required"] = all(name in _ERROR_HEADERS.get(error, {}) for error in group)
        if headers:
            answer["headers"] = headers
        responses[status] = answer
    return responses


def job_responses(body: type[BaseModel], *errors: type[err.ServiceError]) -> dict[int | str, dict[str, Any]]:
    """A job's body (200), the same body FAILED (422, as Segmind answers: the SDK relies on it), the errors."""
    return {
        200: {"model": body, "description": "The job."},
        422: {"model": body, "description": 'The job FAILED: `"status": "FAILED"` and `"error"` say why.'},
        **error_responses(*errors),
    }


# Answered before any route runs, so every operation can get them.
SLOW_CLIENT = "The request's headers or body arrived too slowly (--header-timeout, --body-timeout)."
HOST_REFUSED = "The Host header is missing, malformed, or not one of --allowed-hosts."


def install_openapi(app: FastAPI, settings) -> None:
    """/openapi.json from the routes, plus what their declarations cannot say: validation errors are 400 (never
    FastAPI's 422 body), whether a key is needed (without keys: `security` also lists `{}`, no 401), and what
    the server answers before any route runs."""

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _tell_the_truth(
                build(), auth_on=bool(settings.parsed_api_keys()), hosts_checked=bool(settings.parsed_allowed_hosts())
            )
        assert app.openapi_schema is not None  # set by _tell_the_truth
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


IGNORED_FIELDS_HEADER = {
    "x-ignored-fields": {
        "description": "The body fields this request carried that the model does not know, comma-separated "
        "(accepted and ignored, as Segmind does); absent when there were none.",
        "schema": {"type": "string"},
    }
}


def _tell_the_truth(document: dict[str, Any], auth_on: bool, hosts_checked: bool) -> None:
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    before_routes = [("408", SLOW_CLIENT)] + ([("400", HOST_REFUSED)] if hosts_checked else [])
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            for status, text in before_routes:
                answer = responses.setdefault(status, {"description": "", "content": error_body})
                answer["description"] = f"{answer['description']} Or: {text}" if answer["description"] else text
            failed = responses.get("422", {})
            if "HTTPValidationError" in str(failed):
                # FastAPI's validation body: this server answers validation errors 400 `{"error"}`.
                del responses["422"]
            if "security" in operation and not auth_on:
                operation["security"] = [{SECURITY_SCHEME: []}, {}]
                responses.pop("401", None)
            if "2VParams" in str(operation.get("requestBody", "")):
                for status, answer in list(responses.items()):
                    responses[status] = {**answer, "headers": {**answer.get("headers", {}), **IGNORED_FIELDS_HEADER}}
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if not auth_on:
        scheme = document.get("components", {}).get("securitySchemes", {}).get(SECURITY_SCHEME)
        if scheme is not None:
            scheme["description"] = "This server has no API keys configured: authentication is off."


def allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> list[str]:
    """Every method some route serves at this request's path, for a 405's `Allow` (Starlette names
    only the first route that matched the path: `GET` where `DELETE` is served too)."""
    methods: set[str] = set()
    for route in _leaf_routes(app.router.routes):
        if route.name == UNKNOWN_MODEL_ROUTE:
            continue  # it answers any slug, so it would claim POST for every /v1/<name> path
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


# The name of the route that answers POST /v1/<slug> and /v2/<slug> for slugs this server does not serve.
UNKNOWN_MODEL_ROUTE = "unknown_model"


def _leaf_routes(routes):
    # The routers' own routes (FastAPI keeps an included router whole; none has a prefix).
    for route in routes:
        router = getattr(route, "original_router", None)
        yield from _leaf_routes(router.routes) if router is not None else (route,)


OP_RUN = "run_v1"
OP_SUBMIT = "submit"
OP_RUN_T2V = "run_v1_t2v"
OP_SUBMIT_T2V = "submit_t2v"
OP_STATUS = "get_status"
OP_RESULT = "get_result"
OP_RESULT_V1 = "get_result_v1"
OP_CANCEL = "cancel"
OP_EVENTS = "stream_events"
OP_OUTPUT = "download_output"

# From a submission's answer to the routes that take its id (generated clients and API gateways
# follow these; schemathesis' stateful phase too).
_LINKED = dict(status=OP_STATUS, result=OP_RESULT, legacyResult=OP_RESULT_V1, cancel=OP_CANCEL, events=OP_EVENTS)
SUBMIT_LINKS = {
    name: {"operationId": operation, "parameters": {"request_id": "$response.body#/request_id"}}
    for name, operation in _LINKED.items()
}
