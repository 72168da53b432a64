"""The server's LoRAs (--loras DIR): what a request's ``loras`` entries may name."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.api.bodies import loras_body
from server.api.deps import caller, service_of
from server.api.openapi import AUTH_ERRORS, LorasBody, error_responses

router = APIRouter(tags=["v1"])


@router.get(
    "/v1/loras",
    response_model=LorasBody,
    responses=error_responses(*AUTH_ERRORS),
    summary="The LoRAs requests may apply, by name",
)
async def list_loras(request: Request, owner: str | None = Depends(caller)) -> dict:
    return loras_body(service_of(request))
