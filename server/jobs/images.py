"""Turning the ``image`` parameter (a URL, a data URI or bare base64) into checked image bytes.

Content is checked by decoding it with Pillow on a small pool of threads with a time bound, never by
trusting a Content-Type header. Only the formats a user would send are opened (``ACCEPTED_FORMATS``):
Pillow's other ~35 readers (IM, DDS, SPIDER, EPS...) are never reached; whatever a reader raises is a 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
from PIL import Image, UnidentifiedImageError, features

from server.errors import FetchesBusy, InvalidRequest
from server.jobs.netguard import Resolver, check_url, pinned_client, pinned_request
from server.settings import Settings

DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)
# Decoded pixels beyond this are refused before decoding the whole picture (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000
# Decoding one image may take this long (wall time, queueing for a decoder thread included).
DECODE_TIMEOUT_SECONDS = 20.0
# Images decoded at once: each may hold up to MAX_IMAGE_PIXELS * 4 bytes of pixels while it decodes.
DECODE_THREADS = 2


# Pillow's names; pipelines/generate.py keeps the same list for the worker's own open.
WANTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")


def _readable_formats() -> tuple[str, ...]:
    """The allow-list: what a user would send, each only where the installed Pillow reads it
    (AVIF with Pillow's AVIF support, HEIF/HEIC with the pillow-heif plugin registered)."""
    Image.init()
    needs = {"WEBP": "webp", "AVIF": "avif"}
    readable = [name for name in WANTED_FORMATS if name in Image.OPEN]
    return tuple(name for name in readable if name not in needs or features.check_module(needs[name]))


ACCEPTED_FORMATS = _readable_formats()
ACCEPTED_TEXT = ", ".join({"WEBP": "WebP", "HEIF": "HEIC/HEIF"}.get(name, name) for name in ACCEPTED_FORMATS)
_decoders = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="ltx2-image-decode")


@dataclass(frozen=True)
class ImageSource:
    inline: bytes | None = None
    url: str | None = None


def classify_image_source(value: str, max_bytes: int) -> ImageSource:
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


def check_image_bytes(raw: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """The size of the fully decoded image; InvalidRequest naming the problem. Only ``ACCEPTED_FORMATS`` are
    opened, and whatever a reader raises (TypeError, NotImplementedError...) is the input's fault: a 400."""
    try:
        with Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS) as img:
            width, height = img.size
            # Checked from the header, before decoding: a small file can claim a huge picture.
            if width * height > max_pixels:
                raise InvalidRequest(f"image: {width}x{height} is more than the {max_pixels} pixel limit")
            img.load()
    except InvalidRequest:
        raise
    except UnidentifiedImageError:
        raise InvalidRequest(f"image: cannot be decoded as an image in an accepted format ({ACCEPTED_TEXT})") from None
    except Exception as exc:  # noqa: BLE001 - every reader failure is the input's fault
        reason = f"image: cannot be decoded as an image ({_short(exc)}); accepted formats: {ACCEPTED_TEXT}"
        raise InvalidRequest(reason) from None
    if width < 1 or height < 1:
        raise InvalidRequest("image: has no pixels")
    return width, height


async def decode_image(raw: bytes, max_pixels: int = MAX_IMAGE_PIXELS, timeout: float = DECODE_TIMEOUT_SECONDS):
    """``check_image_bytes`` on a decoder thread, so the event loop keeps serving; a decode that
    takes longer than ``timeout`` is refused (its thread finishes on its own, its answer unread)."""
    future = asyncio.get_running_loop().run_in_executor(_decoders, check_image_bytes, raw, max_pixels)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise InvalidRequest(f"image: decoding took longer than {timeout:g} s; send a smaller image") from None


class FetchSlots:
    """At most ``limit`` image URLs downloading at once (each holds up to --max-image-bytes); beyond: 429."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self) -> FetchSlot:
        if self.in_use >= self.limit:
            message = f"image: {self.limit} image URLs are being downloaded already; retry shortly"
            raise FetchesBusy(message, headers={"Retry-After": "2"})
        self.in_use += 1
        return FetchSlot(self)


@dataclass(eq=False)
class FetchSlot:
    _slots: FetchSlots | None
    # The background task that now holds the slot (and releases it when done), if any.
    task: asyncio.Task | None = None

    def release(self, *_: object) -> None:
        """Idempotent; takes (and ignores) a task, so it can be a task's done callback."""
        if self._slots is not None:
            self._slots.in_use -= 1
            self._slots = None


async def fetch_image_url(url: str, settings: Settings, resolver: Resolver | None = None) -> bytes:
    """GET an image URL; every refusal or failure is an InvalidRequest. Each hop's host is resolved and checked
    (``netguard``) and the connection goes to the checked address (the name kept for Host and TLS); redirects
    are followed by hand so that each target is checked too. ``--image-timeout`` bounds the whole fetch."""
    try:
        async with asyncio.timeout(settings.image_timeout):
            return await _fetch_checked(url, settings, resolver)
    except InvalidRequest:
        raise
    except (TimeoutError, httpx.TimeoutException):
        raise InvalidRequest(f"image: fetching {url} timed out after {settings.image_timeout:g} s") from None
    except Exception as exc:  # noqa: BLE001 - httpx.InvalidURL (a Location like "http:x") is no HTTPError
        raise InvalidRequest(f"image: cannot fetch {url} ({_short(exc)})") from None


async def _fetch_checked(url: str, settings: Settings, resolver: Resolver | None) -> bytes:
    connect_timeout, block_private = settings.image_connect_timeout, settings.block_private_image_urls
    limits = httpx.Timeout(settings.image_timeout, connect=min(settings.image_timeout, connect_timeout))
    # No kept-alive connections: each hop connects afresh, so TLS is always negotiated (and the
    # certificate checked) for the host of that hop even when two hosts share an address.
    pool = httpx.Limits(max_keepalive_connections=0)
    async with pinned_client(timeout=limits, limits=pool) as client:
        current = url
        for _ in range(settings.image_max_redirects + 1):
            target = await check_url(current, block_private=block_private, timeout=connect_timeout, resolver=resolver)
            async with client.stream(**pinned_request(target)) as response:
                if response.is_redirect and response.headers.get("location"):
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise InvalidRequest(f"image: fetching {current} answered HTTP {response.status_code}")
                return await _read_capped(response, current, settings.max_image_bytes)
        raise InvalidRequest(f"image: {url} redirects more than {settings.image_max_redirects} times")


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidRequest(f"image: {url} is larger than the {max_bytes} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded: a gzip bomb meets the cap too
        size += len(chunk)
        if size > max_bytes:
            raise InvalidRequest(f"image: {url} is larger than the {max_bytes} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


# A reader's message may name its buffer ("cannot identify image file <_io.BytesIO object at 0x7f...>"):
# an address says nothing to a client.
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _short(exc: BaseException) -> str:
    text = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
