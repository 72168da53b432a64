"""Muxing through the real ffmpeg (a subprocess): chunked frames with fitted audio, probed with PyAV, and
failures that leave no file behind."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.interface import MuxError
from pipelines.mux import mux_video
from tests.support.media_probe import probe_mp4


def _frames_and_audio(num_frames=6, width=64, height=48):
    rng = np.random.RandomState(0)
    frames = rng.randint(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    audio = (rng.rand(2, 24000) * 0.2 - 0.1).astype(np.float32)
    return frames, audio


def test_mux_accepts_chunk_iterator_and_fits_audio(tmp_path):
    frames, audio = _frames_and_audio(num_frames=12)
    output = tmp_path / "out.mp4"
    mux_video(iter([frames[:5], frames[5:]]), audio, 24000, 12, output, "ultrafast", num_frames=12)
    info = probe_mp4(output)
    assert (info["width"], info["height"], info["frame_count"]) == (64, 48, 12)
    assert info["audio_duration"] == pytest.approx(1.0, abs=1 / 12)


def test_mux_failure_raises_with_ffmpeg_stderr_and_leaves_nothing(tmp_path):
    frames, audio = _frames_and_audio()
    output = tmp_path / "out.mp4"
    with pytest.raises(MuxError, match="preset"):
        mux_video(frames, audio, 24000, 24, output, "no-such-preset")
    assert list(tmp_path.iterdir()) == []


def test_mux_error_from_frame_source_leaves_nothing(tmp_path):
    frames, audio = _frames_and_audio()

    def failing_chunks():
        yield frames[:2]
        raise RuntimeError("decoder blew up")

    with pytest.raises(RuntimeError, match="decoder blew up"):
        mux_video(failing_chunks(), audio, 24000, 24, tmp_path / "out.mp4", "ultrafast", num_frames=6)
    assert list(tmp_path.iterdir()) == []
