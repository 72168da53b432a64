"""Progress on a real server: the status fields and the SSE stream (the pure tracker is in
tests/unit/test_progress.py)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from server.api.app import create_app
from server.settings import Settings
from tests.support.servers import png_data_uri, thread_server

SLUG = "ltx-2-19b-i2v"


def is_monotonic(values: list[float]) -> bool:
    return all(b >= a for a, b in zip(values, values[1:], strict=False))


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


def test_tiny_model_progress_advances_through_the_video_decode(tiny_server):
    # 105 frames decode in three chunks of up to 48: the bar moves between them, then muxing finishes it.
    body = {"image": png_data_uri(), "prompt": "waves", "width": 256, "height": 256, "num_frames": 105, "fps": 8}
    request_id = httpx.post(f"{tiny_server}/v2/{SLUG}", json=body, timeout=30).json()["request_id"]
    events = read_events(f"{tiny_server}/v2/requests/{request_id}/events")
    assert events[-1][1]["status"] == "COMPLETED", events[-1]

    progress = [data["progress"] for _, data in events]
    assert is_monotonic(progress), progress
    decode = [
        (data["step"], data["total_steps"], data["progress"]) for _, data in events if data["stage"] == "decoding_video"
    ]
    assert [step for step, _, _ in decode] == [0, 48, 96, 105], decode
    assert all(total == 105 for _, total, _ in decode)
    values = [value for _, _, value in decode]
    assert values == sorted(values) and len(set(values)) == len(values), values
    stages = [data["stage"] for _, data in events]
    assert stages.index("decoding_audio") < stages.index("decoding_video") < stages.index("muxing")
    muxing = [data["progress"] for _, data in events if data["stage"] == "muxing"]
    assert muxing and all(values[-1] <= value <= 1.0 for value in muxing)


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
    assert response.status_code == 404
    assert response.json()["error"].startswith("Request nope not found (results are kept for")
