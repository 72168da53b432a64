"""A finished video's download URL (the ``output`` of a result body)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from server.api import openapi
from server.api.deps import service_of
from server.api.openapi import OUTPUT_ERRORS, error_responses

router = APIRouter()


@router.get(
    "/outputs/{request_id}/{token}/{file_name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}, "description": "The mp4."},
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
