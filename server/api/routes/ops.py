"""Operations: /health (the process is up), /ready (a worker can take jobs) and /metrics; no API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.api.bodies import capabilities_body
from server.api.deps import service_of
from server.api.openapi import HealthBody, ReadyBody
from server.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get(
    "/health",
    response_model=None,
    responses={200: {"model": HealthBody, "description": "Up."}},
    summary="The API process is up",
)
async def health() -> dict:
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={
        200: {"model": ReadyBody, "description": "Ready: a worker has loaded the model."},
        503: {"model": ReadyBody, "description": "Not ready (loading, failed, draining, or no worker connected)."},
    },
    summary="The model is loaded and a worker can take jobs",
)
async def ready(request: Request):
    service = service_of(request)
    body = await service.store.readiness()
    if not service.settings.shared_store:
        body["test_model"] = service.settings.serves_test_model()
        served = service.settings.served_generation()
        if served is not None:
            body["generation"] = {"name": served.name, "title": served.title, "version": served.version}
    # What a client (the playground) needs to know to show the right fields.
    body["auth_required"] = bool(service.settings.parsed_api_keys())
    body["webhooks"] = bool(service.settings.webhook_secret)
    body["capabilities"] = capabilities_body(service)
    if not service.accepting:
        # Draining after SIGTERM: a load balancer should send new work elsewhere.
        body.update(ready=False, draining=True)
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format); no API key needed, like /health",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The metrics."}},
)
async def metrics(request: Request) -> Response:
    metrics = service_of(request).metrics
    await metrics.refresh()
    return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)
