"""Turning the ``image`` parameter into image bytes on disk: a URL, a data URI or bare base64.

Content is checked by decoding it with Pillow, never by trusting a Content-Type header.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import httpx
from PIL import Image, UnidentifiedImageError

from server.errors import InvalidRequest

DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)
# Decoded pixels beyond this are refused before decoding the whole picture (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageSource:
    """Either inline bytes (already decoded from base64) or a URL still to fetch."""

    inline: bytes | None = None
    url: str | None = None


def classify_image_source(value: str, max_bytes: int) -> ImageSource:
    """Decide what kind of image reference the client sent; decode inline data at once."""
    text = value.strip()
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://")):
        return ImageSource(url=text)
    if lowered.startswith("data:"):
        match = DATA_URI.match(text)
        if match is None:
            raise InvalidRequest("image: a data URI must look like data:image/png;base64,<data>")
        return ImageSource(inline=_decode_base64(match.group("data"), max_bytes))
    if "://" in text[:32]:
        scheme = text.split("://", 1)[0]
        raise InvalidRequest(f"image: URL scheme {scheme!r} is not allowed (use http or https, a data URI or base64)")
    return ImageSource(inline=_decode_base64(text, max_bytes))


def _decode_base64(data: str, max_bytes: int) -> bytes:
    compact = re.sub(r"\s+", "", data)
    if len(compact) * 3 // 4 > max_bytes:
        raise InvalidRequest(f"image: larger than the {max_bytes} byte limit")
    padded = compact + "=" * (-len(compact) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            raise InvalidRequest("image: not an http(s) URL, a data URI, or valid base64 image data") from None
    if not raw:
        raise InvalidRequest("image: empty image data")
    return raw


def check_image_bytes(raw: bytes) -> tuple[int, int]:
    """Decode the image fully and return its size; raise InvalidRequest naming the problem."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidRequest(f"image: {width}x{height} is more than the {MAX_IMAGE_PIXELS} pixel limit")
            img.load()
    except InvalidRequest:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"image: cannot be decoded as an image ({_short(exc)})") from None
    if width < 1 or height < 1:
        raise InvalidRequest("image: has no pixels")
    return width, height


async def fetch_image_url(url: str, *, max_bytes: int, timeout: float) -> bytes:
    """GET an image URL with a total timeout and a byte cap; errors become InvalidRequest."""
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    try:
        async with httpx.AsyncClient(timeout=limits, follow_redirects=True, max_redirects=5) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise InvalidRequest(f"image: fetching {url} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise InvalidRequest(f"image: {url} is larger than the {max_bytes} byte limit")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise InvalidRequest(f"image: {url} is larger than the {max_bytes} byte limit")
                    chunks.append(chunk)
                return b"".join(chunks)
    except InvalidRequest:
        raise
    except httpx.TimeoutException:
        raise InvalidRequest(f"image: fetching {url} timed out after {timeout:g} s") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise InvalidRequest(f"image: cannot fetch {url} ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
