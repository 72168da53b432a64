"""A finished job's video, as the routes serve it: found through the results storage by the job's
unguessable token, as a file to send, a bucket URL to redirect to, or a byte stream."""

from __future__ import annotations

import hmac
from pathlib import Path

from server.errors import GenerationFailed, JobNotFound, OutputGone
from server.jobs.record import Job
from server.jobs.store import JobStore
from server.storage.results import OutputStream


class Outputs:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.results = store.results

    async def file(self, job_id: str, token: str) -> Path | str:
        """The finished video of a job: a file to send, or (a bucket's) URL to redirect to."""
        job = await self.store.find(job_id)
        if job is None or job.output is None or not _same_token(token, job.output_token):
            raise JobNotFound(job_id)
        local = self.results.local_file(job.output)
        return local if local is not None else self.url(job, "")

    async def finished_video(self, job: Job) -> Path | OutputStream:
        """A COMPLETED job's video for the blocking route: a Path, or a bucket's byte stream."""
        try:
            local = self.results.local_file(job.output or "")
            return local if local is not None else await self.results.open_output(job.output or "")
        except OutputGone as exc:
            raise GenerationFailed(exc.message) from None

    def size(self, job: Job) -> int | None:
        """Bytes of the video: as recorded (a shared store's), else of the file while it is there."""
        if job.output_size is not None:
            return job.output_size
        try:
            local = self.results.local_file(job.output or "")
            return local.stat().st_size if local is not None else None
        except (OutputGone, OSError, ValueError):
            return None

    def url(self, job: Job, base: str) -> str:
        """Where a client downloads the job's video: this API (under `base`) or a presigned bucket URL."""
        return self.results.output_url(job.id, job.output or "", job.output_token, base)


def _same_token(presented: str, expected: str) -> bool:
    """Constant-time comparison of bytes: compare_digest refuses str with non-ASCII characters."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
