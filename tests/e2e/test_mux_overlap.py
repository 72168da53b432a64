"""One worker overlaps a job's mux with the next job's denoising (JobDecoded), with every guarantee of a job
at a time kept: progress reaches 1 only at the mux's end, a cancel stops the mux, a crash fails both jobs.
Timestamps are the test's own clock at the arrival of each SSE event."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.api import wait_for
from tests.support.overlap_generators import MUX_CHUNK_SECONDS, MUX_CHUNKS
from tests.support.servers import png_data_uri, thread_server

SLUG = "ltx-2-19b-i2v"
MODEL = "tests.support.overlap_generators:slow_mux"


@dataclass
class Timeline:
    """Every SSE event of one job, with the monotonic time it arrived."""

    events: list[tuple[float, dict]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def first(self, predicate) -> float:
        return next(at for at, data in self.events if predicate(data))

    @property
    def final(self) -> dict:
        return self.events[-1][1]


def _follow(url: str, timeline: Timeline) -> None:
    try:
        with httpx.stream("GET", url, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    timeline.events.append((time.monotonic(), json.loads(line[len("data: ") :])))
    finally:
        timeline.done.set()


def _submit(base_url: str, prompt: str) -> tuple[str, Timeline]:
    body = {"image": png_data_uri(), "prompt": prompt, "width": 256, "height": 256, "num_frames": 9, "fps": 8}
    request_id = httpx.post(f"{base_url}/v2/{SLUG}", json=body).json()["request_id"]
    timeline = Timeline()
    url = f"{base_url}/v2/requests/{request_id}/events"
    threading.Thread(target=_follow, args=(url, timeline), daemon=True).start()
    return request_id, timeline


def _is_denoising(data: dict) -> bool:
    return data.get("stage") == "denoising"


def _server(tmp_path, **settings):
    settings = {"overlap_mux": "on", **settings}
    app = create_app(Settings(model=MODEL, results_dir=str(tmp_path), cancel_grace=60.0, **settings))
    return thread_server(app)


def test_the_next_job_denoises_while_the_first_one_muxes(tmp_path):
    with _server(tmp_path) as base_url:
        _, first = _submit(base_url, "one")
        _, second = _submit(base_url, "two")
        assert first.done.wait(60) and second.done.wait(60)
    assert first.final["status"] == "COMPLETED" and second.final["status"] == "COMPLETED"
    first_completed = first.first(lambda data: data["status"] == "COMPLETED")
    second_denoising = second.first(_is_denoising)
    assert second_denoising < first_completed - MUX_CHUNKS * MUX_CHUNK_SECONDS / 2
    # The first job reaches 1 only when its mux is over, well after the second took the GPU.
    first_full = first.first(lambda data: data["progress"] >= 1.0)
    assert first_full > second_denoising + MUX_CHUNKS * MUX_CHUNK_SECONDS / 2


def test_without_overlap_the_next_job_waits_for_the_mux(tmp_path):
    with _server(tmp_path, overlap_mux="off") as base_url:
        _, first = _submit(base_url, "one")
        _, second = _submit(base_url, "two")
        assert first.done.wait(60) and second.done.wait(60)
    assert first.final["status"] == "COMPLETED" and second.final["status"] == "COMPLETED"
    assert second.first(_is_denoising) > first.first(lambda data: data["status"] == "COMPLETED")


def test_cancel_during_the_mux_stops_it_and_the_next_job_completes(tmp_path):
    with _server(tmp_path) as base_url:
        first_id, first = _submit(base_url, "one")
        _, second = _submit(base_url, "two")
        wait_for(lambda: any(_is_denoising(data) for _, data in second.events), timeout=30)
        cancelled_at = time.monotonic()
        httpx.delete(f"{base_url}/v2/requests/{first_id}")
        assert first.done.wait(30) and second.done.wait(60)
        ready = httpx.get(f"{base_url}/ready").json()
    assert first.final["status"] == "FAILED" and "cancel" in first.final["error"]
    # Stopped between chunks of its mux, not by killing the worker (the grace period is a minute).
    assert first.events[-1][0] - cancelled_at < MUX_CHUNKS * MUX_CHUNK_SECONDS
    assert second.final["status"] == "COMPLETED"
    assert ready["worker_restarts"] == 0
    assert not [path.name for path in tmp_path.rglob(".*.partial")]


def test_a_crash_while_one_job_muxes_fails_both_and_the_worker_recovers(tmp_path):
    with _server(tmp_path) as base_url:
        _, first = _submit(base_url, "one")
        _, second = _submit(base_url, "crash")
        assert first.done.wait(60) and second.done.wait(60)
        _, third = _submit(base_url, "three")
        assert third.done.wait(60)
    for timeline in (first, second):
        assert timeline.final["status"] == "FAILED"
        assert "worker process died" in timeline.final["error"]
    assert third.final["status"] == "COMPLETED"


@pytest.mark.parametrize("job_timeout", [1.2])
def test_a_job_past_its_time_limit_in_its_mux_times_out(tmp_path, job_timeout):
    with _server(tmp_path, job_timeout=job_timeout) as base_url:
        _, first = _submit(base_url, "one")
        assert first.done.wait(60)
    assert first.final["status"] == "FAILED" and "timed out" in first.final["error"]
    assert first.first(lambda data: data.get("stage") == "muxing") is not None
