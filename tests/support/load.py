"""A bounded loopback load: N submissions of a small payload while P pollers poll every job to its end.

Shared by tests/e2e/test_load.py (which asserts the invariants) and scripts/bench_load.py (which prints figures).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.support.servers import png_data_uri

SLUG = "ltx-2-19b-i2v"
T2V_SLUG = "ltx-2-19b-t2v"
FINAL = ("COMPLETED", "FAILED")
# The LoRA a load server is started with (``--loras``) for the mixed payloads.
LOAD_LORA = "load-lora"


def small_payload() -> dict:
    return {"image": png_data_uri(16, 16), "prompt": "load", "width": 256, "height": 256, "num_frames": 1, "fps": 8}


def mixed_payloads(with_lora: bool) -> list[tuple[str, dict]]:
    """Submissions cycle through these: image-to-video, text-to-video, a keyframe, prompt enhancement, a LoRA."""
    plain = small_payload()
    text_only = {key: value for key, value in plain.items() if key != "image"}
    three_frames = {**plain, "num_frames": 3}
    variants = [
        (SLUG, plain),
        (T2V_SLUG, text_only),
        (SLUG, {**three_frames, "keyframes": [{"image": png_data_uri(8, 8), "frame": 2, "strength": 0.5}]}),
        (T2V_SLUG, {**text_only, "enhance_prompt": True}),
    ]
    if with_lora:
        variants.append((SLUG, {**plain, "loras": [{"name": LOAD_LORA, "scale": 0.5}]}))
    return variants


@dataclass
class LoadResult:
    submitted: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    submit_seconds: float = 0.0
    request_ids: list[str] = field(default_factory=list)
    final_status: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    poll_latencies: list[float] = field(default_factory=list)
    server_errors: int = 0
    total_seconds: float = 0.0

    @property
    def duplicated(self) -> int:
        return len(self.request_ids) - len(set(self.request_ids))

    def poll_percentile(self, fraction: float) -> float:
        ordered = sorted(self.poll_latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    @property
    def submissions_per_second(self) -> float:
        return self.submitted / self.submit_seconds if self.submit_seconds else 0.0


async def run_load(
    base_url: str, submissions: int = 1000, pollers: int = 200, submitters: int = 20, mixed: bool = False,
    with_lora: bool = False,
) -> LoadResult:  # fmt: skip
    """``mixed``: submissions cycle through ``mixed_payloads`` (else all are ``small_payload``)."""
    result = LoadResult()
    pending: asyncio.Queue[str | None] = asyncio.Queue()
    variants = mixed_payloads(with_lora) if mixed else [(SLUG, small_payload())]
    limits = httpx.Limits(max_connections=submitters + pollers, max_keepalive_connections=submitters + pollers)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        counter = iter(range(submissions))

        async def submitter() -> None:
            for index in counter:
                slug, body = variants[index % len(variants)]
                response = await client.post(f"/v2/{slug}", json=body)
                if response.status_code >= 500:
                    result.server_errors += 1
                if response.status_code != 200:
                    result.refused[response.status_code] = result.refused.get(response.status_code, 0) + 1
                    continue
                request_id = response.json()["request_id"]
                result.request_ids.append(request_id)
                result.submitted += 1
                pending.put_nowait(request_id)

        async def poller() -> None:
            while True:
                request_id = await pending.get()
                if request_id is None:
                    return
                began = time.perf_counter()
                response = await client.get(f"/v2/requests/{request_id}/status")
                result.poll_latencies.append(time.perf_counter() - began)
                if response.status_code >= 500:
                    result.server_errors += 1
                status = response.json().get("status") if response.status_code in (200, 422) else None
                if response.status_code == 404:
                    result.lost.append(request_id)
                elif status in FINAL:
                    result.final_status[request_id] = status
                else:
                    await asyncio.sleep(0.05)
                    pending.put_nowait(request_id)

        polling = [asyncio.create_task(poller()) for _ in range(pollers)]
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        result.submit_seconds = time.perf_counter() - started
        while len(result.final_status) + len(result.lost) < result.submitted:
            await asyncio.sleep(0.05)
        for _ in polling:
            pending.put_nowait(None)
        await asyncio.gather(*polling)
    result.total_seconds = time.perf_counter() - started
    return result


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """The peak resident memory of one process, sampled from a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wait_until_all_expired(base_url: str, request_ids: list[str], timeout: float) -> bool:
    """True once every id answers 404 (the TTL sweep removed it)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while time.monotonic() < deadline:
            if client.get(f"/v2/requests/{request_ids[-1]}/status").status_code == 404:
                return all(client.get(f"/v2/requests/{rid}/status").status_code == 404 for rid in request_ids)
            time.sleep(0.2)
    return False


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
