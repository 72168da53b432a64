"""Where job results live when API replicas and worker hosts share them: a shared path, or an S3 bucket.

Runs in the API process and on worker hosts (never in the worker child); imports neither torch nor fastapi.
boto3 is the optional ``s3`` extra and is imported only when a bucket is configured.

A *location* is the string a job record keeps for a stored file: an absolute path for the shared
directory, ``s3://bucket/key`` for a bucket. Only the storage that made a location interprets it.
The API serves a local file itself; a bucket's video is a redirect to a presigned URL, or (for /v1)
streamed through (server/jobs/outputs.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol
from urllib.parse import urlsplit

from server.errors import InputGone, OutputGone

INPUT_NAME = "input.img"
OUTPUT_NAME = "output.mp4"
CHUNK_BYTES = 1024 * 1024
# SigV4 presigned URLs are refused by S3 beyond seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
# Results on disk (inputs, videos, their folders) are the server user's alone: files 0600, folders 0700;
# with --results-group-readable its group reads them too (0640, 0750). The modes are the umask of the
# server's processes (``apply_results_umask``), which the worker processes and their ffmpeg inherit,
# so every writer follows them; files made by mkstemp (0600 whatever the umask) are set explicitly.
PRIVATE_UMASK = 0o077
GROUP_READABLE_UMASK = 0o027
_file_mode = 0o666 & ~PRIVATE_UMASK


def apply_results_umask(group_readable: bool) -> int:
    global _file_mode
    umask = GROUP_READABLE_UMASK if group_readable else PRIVATE_UMASK
    os.umask(umask)
    _file_mode = 0o666 & ~umask
    return umask


class ResultStorage(Protocol):
    # API side: stores the input image; returns its location for the job record.
    async def save_input(self, job_id: str, raw: bytes) -> str: ...
    # Worker-host side: a local file the generator can read (InputGone when it is not there).
    async def local_input(self, job_id: str, location: str, scratch_dir: Path) -> Path: ...
    def local_output_path(self, job_id: str, scratch_dir: Path) -> Path: ...  # where the worker writes the mp4
    # After a successful generation: makes the mp4 visible to every replica; returns its location.
    async def publish_output(self, job_id: str, local_path: Path) -> str: ...
    async def discard_local(self, job_id: str, scratch_dir: Path) -> None: ...  # a worker host's scratch copies
    async def output_size(self, location: str) -> int | None: ...  # None when it is gone
    # The URL a result body's ``output`` carries.
    def output_url(self, job_id: str, location: str, token: str, base: str, expires_in: float | None = None) -> str: ...
    # The file to serve directly, or None when the storage serves it itself (OutputGone when gone).
    def local_file(self, location: str) -> Path | None: ...
    # The output's bytes (OutputGone, before any byte, when it is gone).
    async def open_output(self, location: str) -> OutputStream: ...
    async def delete_job(self, job_id: str) -> None: ...  # everything of the job (expiry); idempotent
    async def delete_output(self, location: str) -> None: ...  # a delivery whose result was refused; idempotent


def checked_job_id(job_id: str) -> str:
    # Ids become path components and key segments: refuse anything that could climb out of its folder.
    if not job_id or job_id in (".", "..") or "/" in job_id or "\\" in job_id or "\x00" in job_id:
        raise ValueError(f"not a usable job id: {job_id!r}")
    return job_id


@dataclass(eq=False)
class OutputStream:
    """An output's bytes in chunks, with its size; closes what it reads from when done or abandoned."""

    size: int
    _read: Callable[[int], bytes]
    _close: Callable[[], object]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(self._read, CHUNK_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(self._close)

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self])


class SharedDirStorage:
    """Results under ``root/<job_id>/``; a location is the file's absolute path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def job_dir(self, job_id: str) -> Path:
        return self.root / checked_job_id(job_id)

    async def save_input(self, job_id: str, raw: bytes) -> str:
        path = self.job_dir(job_id) / INPUT_NAME
        await asyncio.to_thread(_write_atomically, path, raw)
        return str(path)

    async def local_input(self, job_id: str, location: str, scratch_dir: Path) -> Path:
        path = self._own_path(location)
        if not await asyncio.to_thread(path.is_file):
            raise InputGone(f"the input image of request {job_id} is no longer in the results directory")
        return path

    def local_output_path(self, job_id: str, scratch_dir: Path) -> Path:
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / OUTPUT_NAME

    async def publish_output(self, job_id: str, local_path: Path) -> str:
        # The file keeps its name: a worker names each delivery's file apart (output-N.mp4).
        target = self.job_dir(job_id) / Path(local_path).name
        if Path(local_path).resolve() != target:
            await asyncio.to_thread(_move_into, Path(local_path), target)
        return str(target)

    async def discard_local(self, job_id: str, scratch_dir: Path) -> None:
        return None

    async def output_size(self, location: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._own_path(location).stat)).st_size
        except FileNotFoundError:
            return None

    def output_url(self, job_id: str, location: str, token: str, base: str, expires_in: float | None = None) -> str:
        return f"{base}/outputs/{job_id}/{token}/{job_id}.mp4"  # the token (128 bits) makes it unguessable

    def local_file(self, location: str) -> Path | None:
        path = self._own_path(location)
        if not path.is_file():
            raise OutputGone(f"the video at {path.name} is no longer in the results directory")
        return path

    async def open_output(self, location: str) -> OutputStream:
        path = self._own_path(location)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise OutputGone(f"the video at {path.name} is no longer in the results directory") from None
        size = os.fstat(handle.fileno()).st_size
        return OutputStream(size, handle.read, handle.close)

    async def delete_job(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.job_dir(job_id), True)

    async def delete_output(self, location: str) -> None:
        await asyncio.to_thread(self._own_path(location).unlink, True)

    def _own_path(self, location: str) -> Path:
        path = Path(location).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{location!r} is not under the results directory {self.root}")
        return path


def _write_atomically(path: Path, raw: bytes) -> None:
    # Another host may look for the file meanwhile: it sees all of it or nothing.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, _file_mode)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _move_into(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(source, target)


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # "" or ends without "/"


def parse_s3_url(url: str) -> S3Url:
    """``s3://bucket/optional/prefix`` -> bucket and prefix; ValueError with the reason otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"must start with s3://; got {url!r}")
    bucket = parts.netloc
    if not bucket:
        raise ValueError(f"must name a bucket (s3://bucket/prefix); got {url!r}")
    if not (3 <= len(bucket) <= 63) or not all(c.isalnum() or c in ".-" for c in bucket) or bucket != bucket.lower():
        raise ValueError(f"bucket must be 3-63 lower-case letters, digits, dots or hyphens; got {bucket!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must be s3://bucket/prefix with no query or fragment; got {url!r}")
    return S3Url(bucket, parts.path.strip("/"))


def check_endpoint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL with a host; got {url!r}")


class S3Storage:
    """Results under ``s3://bucket/prefix/<job_id>/``; worker hosts stage files in a scratch folder."""

    def __init__(self, url: str, endpoint_url: str = "", ttl_seconds: float = 3600.0, client: Any = None) -> None:
        self.place = parse_s3_url(url)
        self.ttl_seconds = ttl_seconds
        self.client = client if client is not None else make_s3_client(endpoint_url)

    def key(self, job_id: str, name: str) -> str:
        return "/".join(filter(None, (self.place.prefix, checked_job_id(job_id), name)))

    def location(self, key: str) -> str:
        return f"s3://{self.place.bucket}/{key}"

    async def save_input(self, job_id: str, raw: bytes) -> str:
        key = self.key(job_id, INPUT_NAME)
        await asyncio.to_thread(self.client.put_object, Bucket=self.place.bucket, Key=key, Body=raw)
        return self.location(key)

    async def local_input(self, job_id: str, location: str, scratch_dir: Path) -> Path:
        key = self._own_key(location)
        target = self._scratch(job_id, scratch_dir) / INPUT_NAME
        try:
            await asyncio.to_thread(self.client.download_file, self.place.bucket, key, str(target))
        except Exception as exc:
            if _is_missing(exc):
                raise InputGone(f"the input image of request {job_id} is no longer in the bucket") from None
            raise
        return target

    def local_output_path(self, job_id: str, scratch_dir: Path) -> Path:
        return self._scratch(job_id, scratch_dir) / OUTPUT_NAME

    async def publish_output(self, job_id: str, local_path: Path) -> str:
        key = self.key(job_id, Path(local_path).name)
        extra = {"ContentType": "video/mp4"}
        await asyncio.to_thread(self.client.upload_file, str(local_path), self.place.bucket, key, ExtraArgs=extra)
        await asyncio.to_thread(Path(local_path).unlink, True)
        return self.location(key)

    async def discard_local(self, job_id: str, scratch_dir: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, Path(scratch_dir) / checked_job_id(job_id), True)

    async def output_size(self, location: str) -> int | None:
        key = self._own_key(location)
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.place.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def output_url(self, job_id: str, location: str, token: str, base: str, expires_in: float | None = None) -> str:
        # Signing is local (no request is made); the URL stops working after expires_in seconds,
        # or earlier if the signing credentials are temporary and expire first.
        seconds = self.ttl_seconds if expires_in is None else expires_in
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.place.bucket,
                "Key": self._own_key(location),
                "ResponseContentType": "video/mp4",
                "ResponseContentDisposition": f'inline; filename="{checked_job_id(job_id)}.mp4"',
            },
            ExpiresIn=max(1, min(MAX_PRESIGN_SECONDS, int(seconds))),
        )

    def local_file(self, location: str) -> Path | None:
        self._own_key(location)
        return None

    async def open_output(self, location: str) -> OutputStream:
        key = self._own_key(location)
        try:
            answer = await asyncio.to_thread(self.client.get_object, Bucket=self.place.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                raise OutputGone(f"the video at {location} is no longer in the bucket") from None
            raise
        body = answer["Body"]
        return OutputStream(int(answer["ContentLength"]), body.read, body.close)

    async def delete_job(self, job_id: str) -> None:
        await asyncio.to_thread(self._delete_prefix, self.key(job_id, "") + "/")

    async def delete_output(self, location: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.place.bucket, Key=self._own_key(location))

    def _delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.place.bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.place.bucket, Delete={"Objects": keys, "Quiet": True})

    def _scratch(self, job_id: str, scratch_dir: Path) -> Path:
        folder = Path(scratch_dir) / checked_job_id(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _own_key(self, location: str) -> str:
        start = f"s3://{self.place.bucket}/"
        if not location.startswith(start):
            raise ValueError(f"{location!r} is not in the results bucket {self.place.bucket}")
        return location[len(start) :]


def _is_missing(exc: Exception) -> bool:
    # botocore's ClientError, recognised without importing botocore where S3 is off.
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and str(response.get("Error", {}).get("Code", "")) in _MISSING_CODES


def make_s3_client(endpoint_url: str = "") -> Any:
    """A boto3 S3 client with the normal credential and region chain (AWS_* variables, profiles, roles)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RuntimeError(
            "results-s3: storing results in S3 needs boto3; install the s3 extra: pip install 'ltx2-server[s3]'"
        ) from None
    # Path-style addressing: MinIO, R2 and other endpoints by IP have no per-bucket host names.
    addressing = "path" if endpoint_url else "auto"
    config = Config(signature_version="s3v4", s3={"addressing_style": addressing}, retries={"mode": "standard"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


def results_storage(
    results_dir: str | Path, s3_url: str = "", s3_endpoint_url: str = "", ttl_seconds: float = 3600.0
) -> ResultStorage:
    """The bucket when ``s3_url`` is set (``s3://bucket/prefix``), else the shared directory; presigned
    output URLs stay valid ``ttl_seconds`` (the jobs' retention)."""
    if s3_url:
        return S3Storage(s3_url, s3_endpoint_url, ttl_seconds)
    return SharedDirStorage(Path(results_dir))
