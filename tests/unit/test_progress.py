"""Progress: the pure tracker and the event hub (the status fields and the SSE stream on a real server are in
tests/e2e/test_progress_server.py)."""

from __future__ import annotations

import pytest

from server.jobs.progress import DurationEstimator, ProgressTracker, eta_seconds


def feed(reports: list[tuple[str, int, int]]) -> list[float]:
    tracker = ProgressTracker()
    return [tracker.report(*report) for report in reports]


def is_monotonic(values: list[float]) -> bool:
    return all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_the_usual_stages_rise_to_one_at_the_end_of_muxing():
    values = feed(
        [("encoding_prompt", 0, 1), ("encoding_prompt", 1, 1)]
        + [("denoising", step, 4) for step in range(5)]
        + [("decoding_audio", 0, 1), ("decoding_audio", 1, 1)]
        + [("decoding_video", frames, 97) for frames in (0, 48, 96, 97)]
        + [("muxing", 0, 1), ("muxing", 1, 1)]
    )
    assert is_monotonic(values) and values[-1] == pytest.approx(1.0)
    assert values[1] == pytest.approx(0.05) and values[6] == pytest.approx(0.75)
    assert all(value < 1.0 for value in values[:-1])
    # The video decode has its own share, and moves the bar chunk by chunk.
    video = values[9:13]
    assert video[0] < video[1] < video[2] < video[3] and video[3] - video[0] == pytest.approx(0.18)


def test_a_generator_reporting_plain_decoding_still_rises_to_one():
    values = feed([("denoising", 4, 4), ("decoding", 0, 1), ("decoding", 1, 1), ("muxing", 0, 1), ("muxing", 1, 1)])
    assert is_monotonic(values) and values[-1] == pytest.approx(1.0) and values[1] < values[2] < values[4]


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


def test_closing_the_hub_ends_open_streams_and_listeners_see_every_change(tmp_path):
    import asyncio

    from server.jobs.events import JobEventHub
    from server.jobs.record import Job

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
