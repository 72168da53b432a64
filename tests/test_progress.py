"""Progress: the pure tracker, then the status fields and the SSE stream on a real server."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from server.app import create_app
from server.progress import DurationEstimator, ProgressTracker, eta_seconds
from server.settings import Settings
from tests.servers import png_data_uri, thread_server

SLUG = "ltx-2-19b-i2v"


def feed(reports: list[tuple[str, int, int]]) -> list[float]:
    tracker = ProgressTracker()
    return [tracker.report(*report) for report in reports]


def is_monotonic(values: list[float]) -> bool:
    return all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_the_usual_stages_rise_to_one_at_the_end_of_muxing():
    values = feed(
        [("encoding_prompt", 0, 1), ("encoding_prompt", 1, 1)]
        + [("denoising", step, 4) for step in range(5)]
        + [("decoding", 0, 1), ("muxing", 0, 1), ("muxing", 1, 1)]
    )
    assert is_monotonic(values) and values[-1] == pytest.approx(1.0)
    assert values[1] == pytest.approx(0.05) and values[6] == pytest.approx(0.75)
    assert all(value < 1.0 for value in values[:-1])


def test_unknown_stages_and_a_second_denoising_with_another_total_keep_room_and_never_go_back():
    values = feed(
        [("encoding_prompt", 1, 1)]
        + [("denoising", step, 8) for step in range(9)]
        + [("upsampling", 0, 1), ("upsampling", 1, 1)]
        + [("stage2_denoising", step, 3) for step in range(4)]
        + [("some_new_stage", 5, 10), ("decoding", 1, 1), ("muxing", 0, 1), ("muxing", 1, 1)]
    )
    assert is_monotonic(values) and values[-1] == pytest.approx(1.0)
    # Each later stage still moves the bar: no stage is squeezed to nothing.
    assert values[-2] < values[-1] and values[10] < values[11] < values[14]


def test_a_step_count_that_starts_over_is_a_new_segment_not_a_step_back():
    values = feed([("denoising", 3, 4), ("denoising", 4, 4), ("denoising", 1, 4), ("denoising", 2, 4)])
    assert is_monotonic(values) and values[-1] > values[1]


def test_zero_total_steps_and_finish():
    tracker = ProgressTracker()
    assert tracker.report("whatever", 0, 0) == 0.0
    assert tracker.finish() == 1.0


def test_eta_and_duration_estimate():
    assert eta_seconds(0.0, 5.0) is None
    assert eta_seconds(0.25, 10.0) == pytest.approx(30.0)
    assert eta_seconds(1.0, 10.0) == 0.0
    estimator = DurationEstimator(smoothing=0.5)
    estimator.add(10.0)
    estimator.add(20.0)
    assert estimator.average == pytest.approx(15.0)


# ---- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    app = create_app(Settings(model="tiny", results_dir=str(tmp_path_factory.mktemp("results"))))
    with thread_server(app, ready_timeout=300) as base_url:
        yield base_url


def read_events(url: str, timeout: float = 120) -> list[tuple[str, dict]]:
    events = []
    with httpx.stream("GET", url, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_tiny_model_progress_advances_monotonically_to_one_over_sse(tiny_server):
    body = {"image": png_data_uri(), "prompt": "waves", "width": 256, "height": 256, "num_frames": 17, "fps": 8}
    request_id = httpx.post(f"{tiny_server}/v2/{SLUG}", json=body, timeout=30).json()["request_id"]
    events = read_events(f"{tiny_server}/v2/requests/{request_id}/events")

    progress = [data["progress"] for _, data in events]
    assert is_monotonic(progress), progress
    assert any(0.0 < value < 1.0 for value in progress), progress
    final = events[-1][1]
    assert events[-1][0] == "status"
    assert final["status"] == "COMPLETED" and final["progress"] == 1.0 and final["stage"] == "completed"
    assert final["output"].startswith(tiny_server + "/outputs/") and final["eta_seconds"] == 0.0
    stages = [data["stage"] for _, data in events]
    assert "denoising" in stages
    assert all(set(data) >= {"step", "total_steps", "queue_position", "eta_seconds"} for _, data in events)

    status = httpx.get(f"{tiny_server}/v2/requests/{request_id}/status").json()
    assert status["progress"] == 1.0 and status["queue_position"] is None and status["status"] == "COMPLETED"
    # A finished job's stream is its final state at once.
    assert [data["status"] for _, data in read_events(f"{tiny_server}/v2/requests/{request_id}/events")] == [
        "COMPLETED"
    ]


def test_queued_job_shows_its_place_and_a_failed_stream_ends_with_the_error(scripted_server):
    def submit(prompt: str) -> str:
        body = {"image": png_data_uri(), "prompt": prompt, "width": 256, "height": 256, "num_frames": 9, "fps": 8}
        return httpx.post(f"{scripted_server}/v2/{SLUG}", json=body, timeout=30).json()["request_id"]

    first = submit("slow")
    second = submit("fail please")
    status = httpx.get(f"{scripted_server}/v2/requests/{second}/status").json()
    assert status["status"] == "QUEUED" and status["stage"] == "queued" and status["progress"] == 0.0
    assert status["queue_position"] in (1, 2)

    events = read_events(f"{scripted_server}/v2/requests/{second}/events")
    assert events[-1][1]["status"] == "FAILED" and "scripted failure" in events[-1][1]["error"]
    assert events[0][1]["queue_position"] is not None or events[0][1]["status"] != "QUEUED"
    deadline = time.monotonic() + 30
    while httpx.get(f"{scripted_server}/v2/requests/{first}/status").json()["status"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_events_of_an_unknown_job_is_the_usual_404(scripted_server):
    response = httpx.get(f"{scripted_server}/v2/requests/nope/events")
    assert response.status_code == 404 and response.json() == {"error": "Request nope not found"}


def test_closing_the_hub_ends_open_streams_and_listeners_see_every_change(tmp_path):
    import asyncio

    from server.events import JobEventHub
    from server.jobs import Job

    async def scenario() -> tuple[list, list]:
        hub = JobEventHub()
        changes: list[str] = []
        hub.add_listener(lambda job, change: changes.append(change))
        hub.add_listener(lambda job, change: 1 / 0)  # a broken listener changes nothing
        job = Job(id="j", params={}, created_at=0.0)
        job.live.observer = hub.publish
        seen = []

        async def consume():
            async for snapshot in hub.stream(job):
                seen.append(snapshot)

        reader = asyncio.create_task(consume())
        await asyncio.sleep(0)
        job.start(1.0)
        job.report_progress("denoising", 1, 2)
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        hub.close()
        await asyncio.wait_for(reader, 5)
        return changes, seen

    changes, seen = asyncio.run(scenario())
    assert changes == ["started", "progress"]
    assert [s.status for s in seen] == ["QUEUED", "PROCESSING", "PROCESSING"] and seen[-1].progress > 0
